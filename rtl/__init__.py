"""Verilog from the firmware graph (floor 7): lowering, adder cells, da4ml's CMVM adder graph, the delay model,
Verilator simulation, Yosys synthesis and the bit-for-bit check against the emulator."""
