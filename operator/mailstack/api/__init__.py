"""Resource models, validation and defaults: raw documents in, typed models or problems out."""
