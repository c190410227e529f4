"""Render a MailService and its material into Kubernetes objects and daemon config files (pure)."""
