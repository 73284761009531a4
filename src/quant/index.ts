// Public surface of quantisation: NF4 with double quantisation, and the NF4 linear layer.
export { NF4_CODE, DYNAMIC_CODE, NF4_BLOCK_SIZE, ABSMAX_BLOCK_SIZE, quantizeNf4, dequantizeNf4, nf4BlockScales, nf4Index, nf4StoredBytes, type Nf4Data, type Nf4Options, type NestedAbsmax } from './nf4.ts';
export { NF4Linear, quantizeLinears, quantizeTensor, nf4LinearHook, nf4Report, isOutputHead, type Nf4Tensors, type QuantizeOptions, type QuantizeReport } from './nf4-linear.ts';
