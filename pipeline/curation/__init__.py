"""The curation inbox: watched outside feeds (content/sources.yaml) are fetched into candidates that an editor
promotes to draft articles or dismisses. Nothing fetched is published before it is rewritten and reviewed."""
