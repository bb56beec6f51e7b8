"""``kms serve``: AWS KMS's wire protocol (AWS JSON 1.1 over HTTP/HTTPS, SigV4)
served from ``Engine.call``.  See docs/server.md."""
