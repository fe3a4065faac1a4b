"""The deployer: desired endpoint state → running container groups, and their model data."""
