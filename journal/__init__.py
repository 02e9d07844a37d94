"""What happened and who did it: events, audit entries and check-result changes.

The lowest app: every other app writes here (through `journal.records`), and
it imports none of them."""
