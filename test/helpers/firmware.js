'use strict';
// Fake firmware for OTA tests: the firmware store checks an image's size and its Espressif magic
// byte, not its content, so a deterministic buffer stands in for a real user1/user2 image.
const crypto = require('node:crypto');

/**
 * An Espressif image of `size` bytes, deterministic from `seed`: byte i is sha256(seed)[i % 32]
 * xor (i * stride) & 0xff, and the first byte is `magic` (0xEA, as the store requires; pass
 * another value for an image the device must refuse).
 */
function image(size, seed, { magic = 0xea, stride = 1 } = {}) {
  const h = crypto.createHash('sha256').update(String(seed)).digest();
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = h[i % 32] ^ ((i * stride) & 0xff);
  out[0] = magic;
  return out;
}

module.exports = { image };
