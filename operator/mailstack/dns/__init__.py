"""DNS: the records a MailDomain needs, the plan against a provider, and the providers."""
