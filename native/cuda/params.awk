# Reads PTX and prints one line per kernel: its name and its parameter kinds, one per parameter:
# 8 = 8-byte integer or pointer, i = 32-bit integer, f = float32, s<N> = struct of N bytes.
# Used by scripts/build-cuda.sh; src/backends/cuda/kernels.ts checks launches against the result.
/\.entry / {
  name = $0; sub(/.*\.entry /, "", name); sub(/\(.*/, "", name)
  sig = ""; inside = 1; next
}
inside && /\.param/ {
  if ($0 ~ /\.b8/) { n = $0; sub(/.*\[/, "", n); sub(/\].*/, "", n); sig = sig "s" n }
  else if ($0 ~ /\.f32/) sig = sig "f"
  else if ($0 ~ /\.[usb]64/) sig = sig "8"
  else if ($0 ~ /\.[usb]32/) sig = sig "i"
  else sig = sig "?"
}
inside && /^\)/ { print name, sig; inside = 0 }
