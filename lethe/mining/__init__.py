"""MAGE mining: elicit, extract, score and expand a memory graph from an anchor."""
