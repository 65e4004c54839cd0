"""The only code that speaks SQL: tables, store functions and migrations."""
