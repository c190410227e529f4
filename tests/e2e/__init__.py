"""End-to-end tests: real daemons started on loopback by the tests themselves."""
