"""Training-free layer selection: the balanced rule, linear CKA + Hungarian matching, layer-map files."""
