"""medallion: an Olist-shaped e-commerce lakehouse (Bronze, Silver, Gold on Delta Lake)."""

__version__ = "0.1.0"
