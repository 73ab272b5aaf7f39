"""One module per resource; each route decodes, calls the domain with a transaction, encodes."""
