"""Operation handlers by area.  Each is ``fn(engine, params, ctx) -> result``, named after
the operation's Python name; the operation table (``Operation.handler``) says which module
serves which operation."""
