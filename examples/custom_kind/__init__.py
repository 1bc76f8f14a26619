"""Example: adding a layer kind to progan-dsl from outside the package (see README)."""
