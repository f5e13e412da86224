/** Number of hash slots of a Redis Cluster. */
export const SLOTS = 16384;

/** CRC16-CCITT (XMODEM) by byte: the checksum Redis Cluster hashes keys with. */
const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

function crc16(bytes: Uint8Array, from: number, to: number): number {
  let crc = 0;
  for (let i = from; i < to; i++)
    crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ (bytes[i] as number)) & 0xff] as number);
  return crc;
}

/**
 * The Cluster slot of a key, as Redis computes it: the CRC16 of the key's hash tag (what is between
 * the first `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
 */
export function keySlot(key: string): number {
  // Keys of ASCII text (run ids, queue names) are hashed without encoding them first.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII range
  const bytes = /^[\x00-\x7f]*$/.test(key) ? asciiBytes(key) : Buffer.from(key);
  let from = 0;
  let to = bytes.length;
  const open = bytes.indexOf(0x7b);
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) {
      from = open + 1;
      to = close;
    }
  }
  return crc16(bytes, from, to) % SLOTS;
}

function asciiBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
