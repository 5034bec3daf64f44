"""The sweep file: its schema, how it is read and resolved, and a trial's regularizers."""
