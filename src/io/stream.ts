/**
 * Buffered file I/O for capture files: a positional reader over one
 * reusable buffer (a file larger than memory streams through it) and a
 * buffered writer. Both are synchronous (`fs.readSync` / `fs.writeSync`):
 * the dataplane they feed is synchronous too, and a read never allocates
 * per record.
 *
 * ```
 *  file:   |.........|=========== buf[lo..hi) ==========|............|
 *                    ^ pos() = file offset of buf[lo]    ^ next read
 * ```
 *
 * @module
 */

import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";

/** Default buffer: 1 MiB. */
export const SOURCE_BUFFER_SIZE = 1 << 20;

/** A streaming, positional reader over one file with one growable buffer. */
export class FileSource {
  /** The path, as given (used in error messages). */
  readonly file: string;
  readonly fd: number;
  /** File size at open (for messages about truncation). */
  readonly size: number;
  /** The buffer; records are views into it, valid until the next read. */
  buf: Uint8Array;
  /** A DataView over {@link buf} (replaced when the buffer grows). */
  view: DataView;
  /** File offset of buf[0]. */
  private base = 0;
  /** Valid bytes are buf[lo..hi). */
  lo = 0;
  hi = 0;
  /** The largest buffer this source may grow to. */
  readonly maxBuffer: number;
  private closed = false;

  constructor(file: string, bufferSize = SOURCE_BUFFER_SIZE, maxBuffer = 64 << 20) {
    this.file = file;
    this.fd = openSync(file, "r");
    try {
      this.size = fstatSync(this.fd).size;
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
    this.buf = new Uint8Array(bufferSize);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.maxBuffer = Math.max(maxBuffer, bufferSize);
  }

  /** File offset of the first unconsumed byte. */
  pos(): number {
    return this.base + this.lo;
  }

  /** Unconsumed bytes in the buffer. */
  available(): number {
    return this.hi - this.lo;
  }

  /** Current buffer capacity. */
  capacity(): number {
    return this.buf.length;
  }

  /**
   * Make at least `n` bytes available at `lo` (compacting, growing up to
   * maxBuffer, reading). Returns false when the file ends first; then
   * `available()` tells how many there are. Throws RangeError past maxBuffer.
   */
  ensure(n: number): boolean {
    if (this.hi - this.lo >= n) return true;
    if (n > this.buf.length) {
      if (n > this.maxBuffer) throw new RangeError(`FileSource: ${n} bytes exceed the ${this.maxBuffer}-byte buffer limit`);
      let cap = this.buf.length;
      while (cap < n) cap *= 2;
      const nb = new Uint8Array(Math.min(cap, this.maxBuffer));
      nb.set(this.buf.subarray(this.lo, this.hi), 0);
      this.base += this.lo;
      this.hi -= this.lo;
      this.lo = 0;
      this.buf = nb;
      this.view = new DataView(nb.buffer, nb.byteOffset, nb.byteLength);
    } else if (this.lo + n > this.buf.length) {
      this.buf.copyWithin(0, this.lo, this.hi);
      this.base += this.lo;
      this.hi -= this.lo;
      this.lo = 0;
    }
    while (this.hi - this.lo < n) {
      const got = readSync(this.fd, this.buf, this.hi, this.buf.length - this.hi, this.base + this.hi);
      if (got === 0) return false;
      this.hi += got;
    }
    return true;
  }

  /** Consume `n` available bytes. */
  consume(n: number): void {
    this.lo += n;
  }

  /** Skip `n` bytes, reading nothing that is not buffered already. */
  skip(n: number): void {
    const avail = this.hi - this.lo;
    if (n <= avail) {
      this.lo += n;
      return;
    }
    this.base += this.hi + (n - avail);
    this.lo = 0;
    this.hi = 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** A buffered writer to one file (created or truncated). */
export class FileSink {
  readonly file: string;
  private fd: number;
  readonly buf: Uint8Array;
  readonly view: DataView;
  /** Bytes buffered. */
  len = 0;
  /** Bytes written to the file so far (flushed + buffered). */
  written = 0;
  private closed = false;

  constructor(file: string, bufferSize = SOURCE_BUFFER_SIZE) {
    this.file = file;
    this.fd = openSync(file, "w");
    this.buf = new Uint8Array(Math.max(bufferSize, 4096));
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  /** Make room for `n` contiguous bytes (n ≤ buffer size); returns the offset to write at. */
  reserve(n: number): number {
    if (n > this.buf.length) throw new RangeError(`FileSink: ${n} bytes exceed the buffer`);
    if (this.len + n > this.buf.length) this.flush();
    const at = this.len;
    this.len += n;
    this.written += n;
    return at;
  }

  /** Append bytes of any length. */
  write(src: Uint8Array, off: number, n: number): void {
    this.written += n;
    while (n > 0) {
      if (this.len === this.buf.length) this.flush();
      const k = Math.min(n, this.buf.length - this.len);
      this.buf.set(src.subarray(off, off + k), this.len);
      this.len += k;
      off += k;
      n -= k;
    }
  }

  /** Append `n` zero bytes (padding). */
  zeros(n: number): void {
    if (n === 0) return;
    const at = this.reserve(n);
    this.buf.fill(0, at, at + n);
  }

  flush(): void {
    let off = 0;
    while (off < this.len) off += writeSync(this.fd, this.buf, off, this.len - off);
    this.len = 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.flush();
    } finally {
      closeSync(this.fd);
    }
  }
}
