"""The bus core: Message, routing, mediation, delivery and the journal hooks."""
