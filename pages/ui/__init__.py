"""Dashboard plumbing shared by the pages, one job a module (not pages: Streamlit lists only pages/*.py)."""
