"""Presentation of results: files, figures, tables, LaTeX and the HTML report (no computation)."""
