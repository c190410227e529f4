"""Amazon Web Services plumbing of the Route 53 provider: request signing and the REST client."""
