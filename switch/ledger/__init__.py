"""The double-entry ledger: schema migrations, posting templates, the group-commit writer, verify."""
