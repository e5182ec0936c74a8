//! FPGA cost model (placeholder until the cost-model work lands).
