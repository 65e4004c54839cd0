"""Source adapters: fetch a document, read entries from it, normalise them into NewsItems."""
