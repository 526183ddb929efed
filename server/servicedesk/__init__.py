"""The service desk (issue 21, items 3 and 5): cases from e-mail, the portal and staff,
queues with routing, SLA clocks on business hours, replies and notes, and the flag for
messages that read like a data-subject request. See docs/service-desk.md."""
