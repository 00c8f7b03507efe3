"""Our own math, independent of PEFT: the reference merge and weighted-adapter combinations."""
