"""Exemplar retrieval: cosine top-K nearest training images (faiss exact / IVF indexes)."""
