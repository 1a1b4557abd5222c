"""The test suite; its folders mirror the source tree (lvmm/, stages/, datasets/, lvmm/cli as cli/)."""
