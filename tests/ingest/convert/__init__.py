"""Converters: document files (PDF, DOCX, PPTX, HTML) to text with pages and headings, and the pool that runs them."""
