"""In-memory and local stand-ins for the services mailstack talks to, shared by the tests that
need no real server: an in-memory DNS provider, and the Route 53 and Cloudflare APIs."""
