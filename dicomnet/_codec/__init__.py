"""The compiled core (Cython): byte work only — framing, element headers, value decoding."""
