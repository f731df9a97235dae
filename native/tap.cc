// skbuff native TAP support: what Node cannot do by itself.
//
//   open(name, flags)            open /dev/net/tun, TUNSETIFF (IFF_TAP | IFF_NO_PI
//                                | optional IFF_VNET_HDR / IFF_MULTI_QUEUE), O_NONBLOCK
//   setOffload(fd, flags, name)  TUNSETOFFLOAD (TUN_F_*): what the kernel may hand us
//   setVnetHdrSize(fd, n, name)  TUNSETVNETHDRSZ (10 or 12)
//   TapIo(arena, tables...)      bursts: up to `max` frames read straight into
//                                the arena (readv), frames written straight from
//                                it (writev); tables bound once, calls pass numbers
//     .startWriter(...)          a transmit thread per queue (TxWriter): write()
//                                then copies frames into its ring and returns
//   close(fd)
//   threadCpuNs()                the calling thread's CPU time (ns)
//   TapPoll(fd, cb)              a uv_poll_t: cb() when the fd becomes readable
//
// The arena is a SharedArrayBuffer. Node 20's Node-API has no accessor for a
// SharedArrayBuffer itself, but a typed array over one hands out its data
// pointer: TapIo takes the arena as a Uint8Array over the whole buffer
// (the `u8` view the TypeScript side already has). Offsets, capacities and
// lengths travel in caller-owned Uint32Arrays bound to TapIo once, so a burst
// allocates nothing on either side and passes only numbers. Every iovec is
// bounds-checked against the arena: a bad offset is a thrown RangeError,
// never a write outside the buffer.
//
// Errors name the device and the errno, e.g.
//   "tap skbt1: TUNSETIFF: Operation not permitted (need root or CAP_NET_ADMIN)".

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

// Older uapi headers lack the newer offload bits; the values are ABI.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif
#ifndef IFF_MULTI_QUEUE
#define IFF_MULTI_QUEUE 0x0100
#endif

namespace {

// Frames per burst and iovecs per frame the native side accepts.
constexpr uint32_t kMaxBurst = 1024;
// UIO_MAXIOV: the kernel's limit on iovecs per readv/writev.
constexpr uint32_t kMaxIov = 1024;
// A read frame spans at most this many buffers (head + MAX_SKB_FRAGS).
constexpr uint32_t kMaxReadSegs = 64;

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r returns the message (maybe not in buf).
  const char* s = strerror_r(err, buf, sizeof buf);
  return std::string(s);
}

// "(need root or CAP_NET_ADMIN)" and friends: what to do about an errno.
std::string Hint(int err) {
  switch (err) {
    case EPERM:
    case EACCES:
      return " (need root or CAP_NET_ADMIN)";
    case EBUSY:
      return " (the interface exists with other flags, or its queues are all attached)";
    case ENODEV:
      return " (is the tun module loaded? modprobe tun)";
    default:
      return "";
  }
}

Napi::Value ThrowErrno(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + ErrnoText(err) + Hint(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, what));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowRange(Napi::Env env, const std::string& msg) {
  Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool GetInt(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what, int64_t lo, int64_t hi, int64_t* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsNumber()) {
    ThrowType(env, std::string(op) + ": " + what + " must be a number");
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  int64_t v = static_cast<int64_t>(d);
  if (static_cast<double>(v) != d || v < lo || v > hi) {
    char num[32];
    snprintf(num, sizeof num, "%.17g", d);
    ThrowRange(env, std::string(op) + ": " + what + " " + num + " out of range " + std::to_string(lo) + ".." + std::to_string(hi));
    return false;
  }
  *out = v;
  return true;
}

// The arena: a Uint8Array over the SharedArrayBuffer.
bool GetArena(const Napi::CallbackInfo& info, size_t i, const char* op, uint8_t** base, size_t* len) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowType(env, std::string(op) + ": the arena must be a Uint8Array over the SharedArrayBuffer");
    return false;
  }
  Napi::Uint8Array a = info[i].As<Napi::Uint8Array>();
  *base = a.Data();
  *len = a.ByteLength();
  return true;
}

bool GetU32s(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what, size_t need, uint32_t** out) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowType(env, std::string(op) + ": " + what + " must be a Uint32Array");
    return false;
  }
  Napi::Uint32Array a = info[i].As<Napi::Uint32Array>();
  if (a.ElementLength() < need) {
    ThrowRange(env, std::string(op) + ": " + what + " has " + std::to_string(a.ElementLength()) + " entries, needs " +
                        std::to_string(need));
    return false;
  }
  *out = a.Data();
  return true;
}

// Optional Int32Array(>=1) that receives the errno that stopped a burst.
bool GetStatus(const Napi::CallbackInfo& info, size_t i, const char* op, int32_t** out) {
  *out = nullptr;
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return true;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[i].As<Napi::Int32Array>().ElementLength() < 1) {
    ThrowType(info.Env(), std::string(op) + ": status must be an Int32Array of length >= 1");
    return false;
  }
  *out = info[i].As<Napi::Int32Array>().Data();
  return true;
}

// open(name: string, flags: number) -> { fd, name }
// flags: IFF_VNET_HDR and/or IFF_MULTI_QUEUE; IFF_TAP | IFF_NO_PI are always set.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "tap open: name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return ThrowRange(env, "tap '" + name + "': interface names are 1.." + std::to_string(IFNAMSIZ - 1) + " bytes");
  }
  int64_t extra = 0;
  if (!GetInt(info, 1, "tap open", "flags", 0, 0xffff, &extra)) return env.Undefined();
  if ((extra & ~static_cast<int64_t>(IFF_VNET_HDR | IFF_MULTI_QUEUE)) != 0) {
    return ThrowRange(env, "tap " + name + ": only IFF_VNET_HDR and IFF_MULTI_QUEUE may be asked for");
  }
  const std::string who = "tap " + name;
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENXIO || err == ENODEV) {
      return ThrowErrno(env, who + ": /dev/net/tun missing (load the tun module: modprobe tun); open /dev/net/tun", err);
    }
    return ThrowErrno(env, who + ": open /dev/net/tun", err);
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | extra);
  memcpy(ifr.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    ::close(fd);
    return ThrowErrno(env, who + ": TUNSETIFF", err);
  }
  // O_NONBLOCK was asked for at open; make sure it survived (it does on every kernel seen).
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || ((fl & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
    int err = errno;
    ::close(fd);
    return ThrowErrno(env, who + ": fcntl(O_NONBLOCK)", err);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("fd", Napi::Number::New(env, fd));
  ifr.ifr_name[IFNAMSIZ - 1] = 0;
  r.Set("name", Napi::String::New(env, ifr.ifr_name));
  return r;
}

// setOffload(fd, flags, name): TUNSETOFFLOAD.
Napi::Value SetOffload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd = 0, flags = 0;
  if (!GetInt(info, 0, "setOffload", "fd", 0, 0x7fffffff, &fd)) return env.Undefined();
  if (!GetInt(info, 1, "setOffload", "flags", 0, 0xff, &flags)) return env.Undefined();
  std::string name = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "?";
  if (ioctl(static_cast<int>(fd), TUNSETOFFLOAD, static_cast<unsigned long>(flags)) < 0) {
    char hex[16];
    snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned>(flags));
    return ThrowErrno(env, "tap " + name + ": TUNSETOFFLOAD(" + hex + ")", errno);
  }
  return env.Undefined();
}

// setVnetHdrSize(fd, size, name): TUNSETVNETHDRSZ, and TUNSETVNETLE so the
// header is little-endian (virtio 1.0) on any host (best effort: LE hosts need nothing).
Napi::Value SetVnetHdrSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd = 0, size = 0;
  if (!GetInt(info, 0, "setVnetHdrSize", "fd", 0, 0x7fffffff, &fd)) return env.Undefined();
  if (!GetInt(info, 1, "setVnetHdrSize", "size", 10, 64, &size)) return env.Undefined();
  std::string name = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "?";
  int sz = static_cast<int>(size);
  if (ioctl(static_cast<int>(fd), TUNSETVNETHDRSZ, &sz) < 0) {
    return ThrowErrno(env, "tap " + name + ": TUNSETVNETHDRSZ(" + std::to_string(sz) + ")", errno);
  }
#ifdef TUNSETVNETLE
  int le = 1;
  (void)ioctl(static_cast<int>(fd), TUNSETVNETLE, &le);
#endif
  return env.Undefined();
}

// Frame i is read with one readv over the iovecs [i*segs, i*segs + segs)
// (offsets into the arena and their capacities; a capacity of 0 ends the
// list early). lens[i] receives what the read returned, which is
// min(frame, buffers): lens[i] == sum(caps) means the frame may have been
// cut (keep one spare byte to tell). Stops at max frames, at EAGAIN
// (*stop = 0) or at another error (*stop = errno). Every iovec is checked
// against the arena first (all or nothing): returns -1 and names the bad one
// in *bad.
int64_t ReadFrames(int fd, uint8_t* base, size_t alen, const uint32_t* offs, const uint32_t* caps, uint32_t* lens, int64_t max,
                   int64_t segs, int32_t* stop, std::string* bad) {
  const size_t nio = static_cast<size_t>(max * segs);
  for (size_t k = 0; k < nio; k++) {
    if (static_cast<uint64_t>(offs[k]) + caps[k] > alen) {
      *bad = "iovec " + std::to_string(k) + " [" + std::to_string(offs[k]) + ", +" + std::to_string(caps[k]) + ") is outside the arena (" +
             std::to_string(alen) + " bytes)";
      return -1;
    }
  }
  struct iovec iov[kMaxReadSegs];
  *stop = 0;
  int64_t n = 0;
  while (n < max) {
    const uint32_t* o = offs + n * segs;
    const uint32_t* c = caps + n * segs;
    int cnt = 0;
    for (int64_t k = 0; k < segs && c[k] != 0; k++) {
      iov[cnt].iov_base = base + o[k];
      iov[cnt].iov_len = c[k];
      cnt++;
    }
    if (cnt == 0) {
      *bad = "frame " + std::to_string(n) + " has no buffer (caps are 0)";
      return -1;
    }
    ssize_t r = readv(fd, iov, cnt);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *stop = errno;
      break;
    }
    lens[n] = static_cast<uint32_t>(r);
    n++;
  }
  return n;
}

// Frame i is the next counts[i] pieces (offsets[], lens[]: a gather of vnet
// header, linear part, page frags ...), written with one writev; the kernel
// takes a TAP frame whole or not at all. Stops at the first frame it
// refuses, with that frame's errno in *stop (EAGAIN included; 0 when all n
// were written). Every piece is checked against the arena first: returns -1
// and names the bad one in *bad.
// The pieces of frames [0, n) (counts[i] pieces each) against the bound
// table size `avail` and the arena: the check every burst write makes
// before any I/O. False with the first problem in *bad.
bool CheckFrames(size_t alen, const uint32_t* offs, const uint32_t* lens, const uint32_t* counts, int64_t n, size_t avail, std::string* bad) {
  size_t pieces = 0;
  for (int64_t i = 0; i < n; i++) {
    if (counts[i] == 0 || counts[i] > kMaxIov) {
      *bad = "frame " + std::to_string(i) + " has " + std::to_string(counts[i]) + " pieces (1.." + std::to_string(kMaxIov) + ")";
      return false;
    }
    pieces += counts[i];
  }
  if (pieces > avail) {
    *bad = "the frames need " + std::to_string(pieces) + " pieces, " + std::to_string(avail) + " are bound";
    return false;
  }
  for (size_t k = 0; k < pieces; k++) {
    if (static_cast<uint64_t>(offs[k]) + lens[k] > alen) {
      *bad = "piece " + std::to_string(k) + " [" + std::to_string(offs[k]) + ", +" + std::to_string(lens[k]) + ") is outside the arena (" +
             std::to_string(alen) + " bytes)";
      return false;
    }
  }
  return true;
}

// One frame, `cnt` checked pieces gathered from the arena, in one writev
// (retried on EINTR): the kernel takes a TAP frame whole or not at all.
ssize_t WriteFrame(int fd, uint8_t* base, const uint32_t* offs, const uint32_t* lens, uint32_t cnt) {
  static thread_local struct iovec iov[kMaxIov];
  for (uint32_t k = 0; k < cnt; k++) {
    iov[k].iov_base = base + offs[k];
    iov[k].iov_len = lens[k];
  }
  ssize_t r;
  do r = writev(fd, iov, static_cast<int>(cnt));
  while (r < 0 && errno == EINTR);
  return r;
}

int64_t WriteFrames(int fd, uint8_t* base, size_t alen, const uint32_t* offs, const uint32_t* lens, const uint32_t* counts, int64_t n,
                    size_t avail, int32_t* stop, std::string* bad) {
  if (!CheckFrames(alen, offs, lens, counts, n, avail, bad)) return -1;
  *stop = 0;
  int64_t i = 0;
  size_t at = 0;
  for (; i < n; i++) {
    if (WriteFrame(fd, base, offs + at, lens + at, counts[i]) < 0) {
      *stop = errno;
      break;
    }
    at += counts[i];
  }
  return i;
}

// TxWriter: one queue's transmit thread, the user-space counterpart of
// vhost-net's worker. The producer (the JS thread, in TapIo.write) copies
// each frame into a byte ring and returns at once; the thread drains the ring
// with one write(2) per frame (tun takes one frame per call) and sleeps on a
// futex when it is empty. The producer kicks it only when it sleeps
// (vhost's notification suppression), so a busy writer costs no syscall.
//
// Single producer, single consumer, lock-free:
//   head_  bytes published (producer; seq_cst store, then a look at sleeping_)
//   tail_  bytes written   (thread;   release store after every frame)
//   record = [u32 len | u32 meta | frame bytes, padded to 8]; len 0xffffffff = wrap
//   meta   = bit 31: a software segment; bits 0..30: the bytes the core counted
// Sleeping is Dekker-safe: the thread sets sleeping_ then re-reads head_; the
// producer stores head_ then reads sleeping_ (all seq_cst), so either the
// thread sees the new frames or the producer sees it asleep and kicks.
//
// A frame the kernel refuses is counted in the caller's Int32Array (over a
// SharedArrayBuffer; plain 32-bit atomics, wrapping): the JS side takes it
// back from the device counters at its next poll (tapTxReconcile). The
// detailed counters are bumped before kRefused, which the JS side reads first.
class TxWriter {
 public:
  // Indices into the counters array (mirrored in src/native/tap-addon.ts).
  enum Counter {
    kRefused = 0,        // frames refused, any kind (bumped last)
    kRefusedPackets,     // refused frames that were packets the core counted as sent
    kRefusedCounted,     // the bytes the core counted for those
    kRefusedSegments,    // refused software segments
    kRefusedBytes,       // refused frame bytes (virtio header included)
    kBusy,               // EAGAIN / ENOBUFS
    kCarrier,            // EIO: the kernel side is down
    kOther,              // any other errno
    kLastErrno,
    kWritten,            // frames written
    kKicks,              // futex wakes by the producer
    kSleeps,             // times the thread slept
    kRoomWaits,          // times the producer waited for room in a full ring
    kDirect,             // large frames the producer wrote itself (the ring was empty)
    kNCounters
  };
  static constexpr uint32_t kWrap = 0xffffffffu;
  static constexpr uint32_t kSegment = 0x80000000u;

  TxWriter(int fd, size_t cap, int32_t* ctr, const std::string& name, int64_t waitMs)
      : fd_(fd), cap_(cap), ctr_(ctr), waitMs_(waitMs) {
    ring_ = static_cast<uint8_t*>(aligned_alloc(64, cap));
    if (ring_ == nullptr) return;
    thread_ = std::thread([this] { Run(); });
    // "skbtx:<ifname>" in top -H / ps -L (15 characters at most).
    std::string tn = ("skbtx:" + name).substr(0, 15);
    pthread_setname_np(thread_.native_handle(), tn.c_str());
  }
  ~TxWriter() {
    Stop();
    free(ring_);
  }
  bool ok() const { return ring_ != nullptr; }
  size_t cap() const { return cap_; }
  uint64_t pending() const { return head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire); }

  // Write out what is queued, then end the thread (idempotent).
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.store(1, std::memory_order_seq_cst);
    Kick();
    thread_.join();
  }

  // Nothing staged, published or being written: a frame written now keeps the order.
  bool Idle() const { return stage_ == tail_.load(std::memory_order_acquire); }
  void CountDirect() { __atomic_fetch_add(ctr_ + kDirect, 1, __ATOMIC_RELAXED); }

  // The ring has no room for a frame of `total` bytes: publish what is staged
  // (the thread can only drain that) and wait until there is — the
  // back-pressure a synchronous write would have applied, without dropping.
  // Gives up (false) after waitMs_ of no room, e.g. when the fd blocks.
  bool WaitRoom(uint32_t total) {
    const uint64_t need = Need(total);
    Publish();
    __atomic_fetch_add(ctr_ + kRoomWaits, 1, __ATOMIC_RELAXED);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
      const uint32_t seen = freed_.load(std::memory_order_seq_cst);
      waiting_.store(1, std::memory_order_seq_cst);
      if (Room(need)) break;
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      const int64_t left = waitMs_ * 1000000 - ((now.tv_sec - t0.tv_sec) * 1000000000 + (now.tv_nsec - t0.tv_nsec));
      if (left <= 0) {
        waiting_.store(0, std::memory_order_seq_cst);
        return false;
      }
      struct timespec ts = {static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&freed_), FUTEX_WAIT_PRIVATE, seen, &ts, nullptr, 0);
    }
    waiting_.store(0, std::memory_order_seq_cst);
    return true;
  }

  // Stage one frame (gathered from the arena pieces); false when the ring has no room.
  bool Post(const uint8_t* base, const uint32_t* offs, const uint32_t* lens, uint32_t cnt, uint32_t total, uint32_t meta) {
    const uint64_t need = Need(total);
    if (!Room(need)) return false;
    uint64_t pos = stage_ % cap_;
    if (need != Record(total)) {
      // Not enough bytes left before the end: a wrap marker, then the record at 0.
      memcpy(ring_ + pos, &kWrap, 4);
      stage_ += cap_ - pos;
      pos = 0;
    }
    uint8_t* dst = ring_ + pos;
    memcpy(dst, &total, 4);
    memcpy(dst + 4, &meta, 4);
    dst += 8;
    for (uint32_t k = 0; k < cnt; k++) {
      memcpy(dst, base + offs[k], lens[k]);
      dst += lens[k];
    }
    stage_ += Record(total);
    return true;
  }

  // Make the staged frames visible; wake the thread if it sleeps.
  void Publish() {
    if (head_.load(std::memory_order_relaxed) == stage_) return;
    head_.store(stage_, std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_seq_cst) != 0) Kick();
  }

 private:
  // Ring bytes of the record of a `total`-byte frame: header + bytes, padded to 8.
  static uint64_t Record(uint64_t total) { return 8 + ((total + 7) & ~7ull); }
  // Ring bytes a frame of `total` bytes takes at the staging point (with the wrap it may need).
  uint64_t Need(uint32_t total) const {
    const uint64_t rec = Record(total);
    const uint64_t pos = stage_ % cap_;
    return pos + rec > cap_ ? cap_ - pos + rec : rec;
  }
  bool Room(uint64_t need) const { return stage_ - tail_.load(std::memory_order_acquire) + need <= cap_; }

  void Add(int i, uint32_t v) { __atomic_fetch_add(ctr_ + i, static_cast<int32_t>(v), __ATOMIC_RELAXED); }

  void Kick() {
    Add(kKicks, 1);
    wake_.fetch_add(1, std::memory_order_seq_cst);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&wake_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }

  void Run() {
    uint64_t t = 0;
    for (;;) {
      const uint64_t h = head_.load(std::memory_order_acquire);
      if (t == h) {
        if (stop_.load(std::memory_order_acquire) != 0) return;
        const uint32_t seen = wake_.load(std::memory_order_seq_cst);
        sleeping_.store(1, std::memory_order_seq_cst);
        if (head_.load(std::memory_order_seq_cst) == t && stop_.load(std::memory_order_seq_cst) == 0) {
          Add(kSleeps, 1);
          syscall(SYS_futex, reinterpret_cast<uint32_t*>(&wake_), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
        }
        sleeping_.store(0, std::memory_order_seq_cst);
        continue;
      }
      while (t != h) {
        const uint64_t pos = t % cap_;
        uint32_t len, meta;
        memcpy(&len, ring_ + pos, 4);
        if (len == kWrap) {
          t += cap_ - pos;
          continue;
        }
        memcpy(&meta, ring_ + pos + 4, 4);
        ssize_t r;
        do r = write(fd_, ring_ + pos + 8, len);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
          const int e = errno;
          if ((meta & kSegment) != 0) {
            Add(kRefusedSegments, 1);
          } else {
            Add(kRefusedPackets, 1);
            Add(kRefusedCounted, meta);
          }
          Add(kRefusedBytes, len);
          Add(e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS ? kBusy : e == EIO ? kCarrier : kOther, 1);
          __atomic_store_n(ctr_ + kLastErrno, e, __ATOMIC_RELAXED);
          __atomic_fetch_add(ctr_ + kRefused, 1, __ATOMIC_RELEASE);
        } else {
          Add(kWritten, 1);
        }
        t += Record(len);
        tail_.store(t, std::memory_order_seq_cst);
        if (waiting_.load(std::memory_order_seq_cst) != 0) {
          // The producer waits for room (WaitRoom): tell it some was freed.
          freed_.fetch_add(1, std::memory_order_seq_cst);
          syscall(SYS_futex, reinterpret_cast<uint32_t*>(&freed_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
        }
      }
    }
  }

  int fd_;
  size_t cap_;
  int32_t* ctr_;
  int64_t waitMs_;
  uint8_t* ring_ = nullptr;
  uint64_t stage_ = 0;  // producer-private: staged, not yet published
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) std::atomic<uint32_t> wake_{0};
  std::atomic<uint32_t> sleeping_{0};
  std::atomic<uint32_t> stop_{0};
  alignas(64) std::atomic<uint32_t> freed_{0};
  std::atomic<uint32_t> waiting_{0};
  std::thread thread_;
};

// TapIo: the arena and one queue's burst tables, bound once, so that a
// burst call passes only numbers (unwrapping typed arrays on every call
// cost several % of a router's CPU).
//
//   const io = new TapIo(arena, rxOffsets, rxCaps, rxLens, txOffsets, txLens, txCounts, status);
//   io.read(fd, max, segs)            -> frames read (see ReadFrames); status[0] = errno or 0
//   io.write(fd, n, piece0, frame0)   -> frames written: frames frame0.. of txCounts, pieces from piece0
//                                        (with a writer: frames queued; status[0] ENOBUFS when the ring is full)
//   io.startWriter(fd, ringBytes, counted, kinds, counters, name) / io.stopWriter() / io.writerPending()
//
// The object keeps references to every array (they stay alive while it
// does); the arena's SharedArrayBuffer never moves. Bad arguments throw.
class TapIo : public Napi::ObjectWrap<TapIo> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "TapIo", {InstanceMethod<&TapIo::Read>("read"), InstanceMethod<&TapIo::Write>("write"),
                                      InstanceMethod<&TapIo::StartWriter>("startWriter"), InstanceMethod<&TapIo::StopWriter>("stopWriter"),
                                      InstanceMethod<&TapIo::WriterPending>("writerPending")});
  }

  explicit TapIo(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TapIo>(info) {
    const char* op = "TapIo";
    if (!GetArena(info, 0, op, &base_, &alen_)) return;
    if (!Bind(info, 1, "rxOffsets", &rxOffs_, &rxOffsN_) || !Bind(info, 2, "rxCaps", &rxCaps_, &rxCapsN_) ||
        !Bind(info, 3, "rxLens", &rxLens_, &rxLensN_) || !Bind(info, 4, "txOffsets", &txOffs_, &txOffsN_) ||
        !Bind(info, 5, "txLens", &txLens_, &txLensN_) || !Bind(info, 6, "txCounts", &txCounts_, &txCountsN_)) {
      return;
    }
    if (!GetStatus(info, 7, op, &status_) || status_ == nullptr) {
      if (!info.Env().IsExceptionPending()) ThrowType(info.Env(), "TapIo: status must be an Int32Array of length >= 1");
      return;
    }
    for (size_t i = 0; i < 8; i++) refs_[i] = Napi::Persistent(info[i].As<Napi::Object>());
  }

  // The writer thread reads the arena and bumps the counters: end it before
  // the references that keep them alive go.
  ~TapIo() override {
    if (writer_) writer_->Stop();
  }

 private:
  bool Bind(const Napi::CallbackInfo& info, size_t i, const char* what, uint32_t** p, size_t* n) {
    if (!GetU32s(info, i, "TapIo", what, 0, p)) return false;
    *n = info[i].As<Napi::Uint32Array>().ElementLength();
    return true;
  }

  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* op = "TapIo.read";
    int64_t fd = 0, max = 0, segs = 0;
    if (!GetInt(info, 0, op, "fd", 0, 0x7fffffff, &fd)) return env.Undefined();
    if (!GetInt(info, 1, op, "max", 0, kMaxBurst, &max)) return env.Undefined();
    if (!GetInt(info, 2, op, "segs", 1, kMaxReadSegs, &segs)) return env.Undefined();
    const size_t nio = static_cast<size_t>(max * segs);
    if (nio > rxOffsN_ || nio > rxCapsN_ || static_cast<size_t>(max) > rxLensN_) {
      return ThrowRange(env, std::string(op) + ": " + std::to_string(max) + " frames of " + std::to_string(segs) +
                                 " iovecs do not fit the bound tables (" + std::to_string(rxOffsN_) + " iovecs, " + std::to_string(rxLensN_) + " lens)");
    }
    std::string bad;
    const int64_t n = ReadFrames(static_cast<int>(fd), base_, alen_, rxOffs_, rxCaps_, rxLens_, max, segs, status_, &bad);
    if (n < 0) return ThrowRange(env, std::string(op) + ": " + bad);
    return Napi::Number::New(env, static_cast<double>(n));
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* op = "TapIo.write";
    int64_t fd = 0, n = 0, piece0 = 0, frame0 = 0;
    if (!GetInt(info, 0, op, "fd", 0, 0x7fffffff, &fd)) return env.Undefined();
    if (!GetInt(info, 1, op, "n", 0, kMaxBurst, &n)) return env.Undefined();
    if (!GetInt(info, 2, op, "piece0", 0, 0x7fffffff, &piece0)) return env.Undefined();
    if (!GetInt(info, 3, op, "frame0", 0, 0x7fffffff, &frame0)) return env.Undefined();
    if (static_cast<size_t>(frame0 + n) > txCountsN_ || static_cast<size_t>(piece0) > txOffsN_ || txLensN_ < txOffsN_) {
      return ThrowRange(env, std::string(op) + ": frames " + std::to_string(frame0) + "+" + std::to_string(n) + " / piece " +
                                 std::to_string(piece0) + " are outside the bound tables");
    }
    if (writer_ && fd == writerFd_) {
      const int64_t k = PostFrames(env, op, n, piece0, frame0);
      return k < 0 ? env.Undefined() : Napi::Number::New(env, static_cast<double>(k));
    }
    std::string bad;
    const int64_t w = WriteFrames(static_cast<int>(fd), base_, alen_, txOffs_ + piece0, txLens_ + piece0, txCounts_ + frame0, n,
                                  txOffsN_ - static_cast<size_t>(piece0), status_, &bad);
    if (w < 0) return ThrowRange(env, std::string(op) + ": " + bad);
    return Napi::Number::New(env, static_cast<double>(w));
  }

  // Frames this large (TSO/USO super-frames) skip the ring when it is idle:
  // a copy of 64 KiB costs more than the parallel write saves.
  static constexpr uint64_t kDirectMin = 8192;

  // TapIo.write with a writer: stage frame0.. into the ring (bounds checked
  // as WriteFrames does), publish once; a super-frame meeting an idle ring is
  // written directly instead. A full ring is waited on (WaitRoom);
  // stops at a frame that found no room within the wait (status ENOBUFS) or
  // is too large for the ring (EMSGSIZE).
  int64_t PostFrames(Napi::Env env, const char* op, int64_t n, int64_t piece0, int64_t frame0) {
    const uint32_t* counts = txCounts_ + frame0;
    const uint32_t* offs = txOffs_ + piece0;
    const uint32_t* lens = txLens_ + piece0;
    if (static_cast<size_t>(frame0 + n) > wCountedN_ || static_cast<size_t>(frame0 + n) > wKindsN_) {
      ThrowRange(env, std::string(op) + ": frames " + std::to_string(frame0) + "+" + std::to_string(n) + " are outside the writer's tables");
      return -1;
    }
    std::string bad;
    if (!CheckFrames(alen_, offs, lens, counts, n, txOffsN_ - static_cast<size_t>(piece0), &bad)) {
      ThrowRange(env, std::string(op) + ": " + bad);
      return -1;
    }
    size_t at = 0;
    int64_t i = 0;
    *status_ = 0;
    for (; i < n; i++) {
      const uint32_t cnt = counts[i];
      uint64_t total = 0;
      for (uint32_t k = 0; k < cnt; k++) total += lens[at + k];
      // A frame may take at most half the ring (so a wrap never starves it).
      if (total + 8 > writer_->cap() / 2) {
        *status_ = EMSGSIZE;
        break;
      }
      if (total >= kDirectMin && writer_->Idle()) {
        // A super-frame with nothing queued before it: write it from the arena
        // here (no copy; the order holds). A refusal stops the burst as in WriteFrames.
        if (WriteFrame(static_cast<int>(writerFd_), base_, offs + at, lens + at, cnt) < 0) {
          *status_ = errno;
          break;
        }
        writer_->CountDirect();
      } else {
        const uint32_t t32 = static_cast<uint32_t>(total);
        const uint32_t meta = wKinds_[frame0 + i] != 0 ? TxWriter::kSegment : (wCounted_[frame0 + i] & ~TxWriter::kSegment);
        if (!writer_->Post(base_, offs + at, lens + at, cnt, t32, meta) &&
            !(writer_->WaitRoom(t32) && writer_->Post(base_, offs + at, lens + at, cnt, t32, meta))) {
          *status_ = ENOBUFS;
          break;
        }
      }
      at += cnt;
    }
    writer_->Publish();
    return i;
  }

  // startWriter(fd, ringBytes, counted: Uint32Array, kinds: Uint8Array, counters: Int32Array over a
  // SharedArrayBuffer (>= kNCounters), name[, waitMs = 1000]): from now on write(fd, ...) queues frames for a
  // transmit thread. counted[i] / kinds[i] (frame i of the bound txCounts) say how a refused
  // frame is taken back: kind 0 a packet the core counted as `counted` bytes, else a segment.
  Napi::Value StartWriter(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* op = "TapIo.startWriter";
    int64_t fd = 0, cap = 0;
    if (!GetInt(info, 0, op, "fd", 0, 0x7fffffff, &fd)) return env.Undefined();
    if (!GetInt(info, 1, op, "ringBytes", 4096, 1 << 30, &cap)) return env.Undefined();
    if (writer_) return ThrowRange(env, std::string(op) + ": this queue already has a writer");
    if (!GetU32s(info, 2, op, "counted", 0, &wCounted_)) return env.Undefined();
    wCountedN_ = info[2].As<Napi::Uint32Array>().ElementLength();
    if (info.Length() <= 3 || !info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      return ThrowType(env, std::string(op) + ": kinds must be a Uint8Array");
    }
    wKinds_ = info[3].As<Napi::Uint8Array>().Data();
    wKindsN_ = info[3].As<Napi::Uint8Array>().ElementLength();
    if (info.Length() <= 4 || !info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        info[4].As<Napi::Int32Array>().ElementLength() < TxWriter::kNCounters) {
      return ThrowType(env, std::string(op) + ": counters must be an Int32Array of length >= " + std::to_string(TxWriter::kNCounters) +
                                " over a SharedArrayBuffer");
    }
    if (info.Length() <= 5 || !info[5].IsString()) return ThrowType(env, std::string(op) + ": name must be a string");
    int64_t waitMs = 1000;
    if (info.Length() > 6 && !info[6].IsUndefined() && !GetInt(info, 6, op, "waitMs", 0, 60000, &waitMs)) return env.Undefined();
    int32_t* ctr = info[4].As<Napi::Int32Array>().Data();
    writer_ = std::make_unique<TxWriter>(static_cast<int>(fd), static_cast<size_t>(cap) & ~static_cast<size_t>(7), ctr,
                                         info[5].As<Napi::String>().Utf8Value(), waitMs);
    if (!writer_->ok()) {
      writer_.reset();
      return ThrowErrno(env, std::string(op) + ": ring of " + std::to_string(cap) + " bytes", ENOMEM);
    }
    writerFd_ = fd;
    for (size_t i = 2; i < 5; i++) wRefs_[i - 2] = Napi::Persistent(info[i].As<Napi::Object>());
    return env.Undefined();
  }

  // stopWriter(): write out what is queued, end the thread; write() is direct again (idempotent).
  Napi::Value StopWriter(const Napi::CallbackInfo& info) {
    if (writer_) writer_->Stop();
    writer_.reset();
    writerFd_ = -1;
    return info.Env().Undefined();
  }

  // writerPending() -> bytes queued and not yet written (0 without a writer).
  Napi::Value WriterPending(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), writer_ ? static_cast<double>(writer_->pending()) : 0);
  }

  std::unique_ptr<TxWriter> writer_;
  int64_t writerFd_ = -1;
  uint32_t* wCounted_ = nullptr;
  uint8_t* wKinds_ = nullptr;
  size_t wCountedN_ = 0, wKindsN_ = 0;
  Napi::ObjectReference wRefs_[3];
  uint8_t* base_ = nullptr;
  size_t alen_ = 0;
  uint32_t *rxOffs_ = nullptr, *rxCaps_ = nullptr, *rxLens_ = nullptr, *txOffs_ = nullptr, *txLens_ = nullptr, *txCounts_ = nullptr;
  size_t rxOffsN_ = 0, rxCapsN_ = 0, rxLensN_ = 0, txOffsN_ = 0, txLensN_ = 0, txCountsN_ = 0;
  int32_t* status_ = nullptr;
  Napi::ObjectReference refs_[8];
};

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t fd = 0;
  if (!GetInt(info, 0, "close", "fd", 0, 0x7fffffff, &fd)) return env.Undefined();
  if (::close(static_cast<int>(fd)) < 0 && errno != EINTR) return ThrowErrno(env, "close(" + std::to_string(fd) + ")", errno);
  return env.Undefined();
}

// threadCpuNs() -> CPU time of the calling thread, ns (CLOCK_THREAD_CPUTIME_ID): what
// an A/B inside one process charges to each side without the other threads' time.
Napi::Value ThreadCpuNs(const Napi::CallbackInfo& info) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return Napi::Number::New(info.Env(), static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec));
}

// strerror for JS (cold: error reports).
Napi::Value StrError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t err = 0;
  if (!GetInt(info, 0, "strerror", "errno", 0, 4095, &err)) return env.Undefined();
  return Napi::String::New(env, ErrnoText(static_cast<int>(err)));
}

// TapPoll: readiness of one fd through libuv (uv_poll_t, level-triggered).
//
//   const p = new TapPoll(fd, (status) => { ... });  // status 0, or a negative libuv error
//   p.start();   // watch for readable (idempotent)
//   p.stop();    // stop watching (idempotent)
//   p.close();   // release the handle (idempotent; also done at GC)
//
// The NAPI pattern uses it as an interrupt line: the callback stops the
// watch and schedules NAPI; the poll re-arms it with start() once the fd is
// drained. An active watch keeps the event loop alive, like a socket.
class TapPoll : public Napi::ObjectWrap<TapPoll> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "TapPoll",
                       {InstanceMethod<&TapPoll::Start>("start"), InstanceMethod<&TapPoll::Stop>("stop"),
                        InstanceMethod<&TapPoll::CloseHandle>("close")});
  }

  explicit TapPoll(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TapPoll>(info) {
    Napi::Env env = info.Env();
    int64_t fd = 0;
    if (!GetInt(info, 0, "TapPoll", "fd", 0, 0x7fffffff, &fd)) return;
    if (info.Length() < 2 || !info[1].IsFunction()) {
      ThrowType(env, "TapPoll: callback must be a function");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "TapPoll: no libuv loop").ThrowAsJavaScriptException();
      return;
    }
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, static_cast<int>(fd));
    if (rc != 0) {
      delete handle_;
      handle_ = nullptr;
      Napi::Error::New(env, std::string("TapPoll: uv_poll_init(fd ") + std::to_string(fd) + "): " + uv_strerror(rc))
          .ThrowAsJavaScriptException();
      return;
    }
    handle_->data = this;
    env_ = env;
    cb_ = Napi::Persistent(info[1].As<Napi::Function>());
    ctx_ = std::make_unique<Napi::AsyncContext>(env, "skbuff:TapPoll");
  }

  ~TapPoll() override { Release(); }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (handle_ == nullptr) return ThrowRange(info.Env(), "TapPoll.start: the handle is closed");
    if (!active_) {
      int rc = uv_poll_start(handle_, UV_READABLE, OnReady);
      if (rc != 0) {
        Napi::Error::New(info.Env(), std::string("TapPoll.start: ") + uv_strerror(rc)).ThrowAsJavaScriptException();
        return info.Env().Undefined();
      }
      active_ = true;
    }
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr && active_) {
      uv_poll_stop(handle_);
      active_ = false;
    }
    return info.Env().Undefined();
  }

  Napi::Value CloseHandle(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() {
    if (handle_ == nullptr) return;
    uv_poll_stop(handle_);
    active_ = false;
    handle_->data = nullptr;
    // The handle memory is freed once libuv is done with it.
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
    // cb_ / ctx_ go with the object (or now, to drop the function early).
    cb_.Reset();
  }

  static void OnReady(uv_poll_t* h, int status, int /*events*/) {
    TapPoll* self = static_cast<TapPoll*>(h->data);
    if (self == nullptr || self->cb_.IsEmpty()) return;
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    // MakeCallback: async hooks see it, and process.nextTick / microtasks run after it.
    self->cb_.MakeCallback(env.Global(), {Napi::Number::New(env, status)}, *self->ctx_);
    if (env.IsExceptionPending()) {
      // Nobody up the stack can catch it: report it like any uncaught exception.
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  uv_poll_t* handle_ = nullptr;
  bool active_ = false;
  napi_env env_ = nullptr;
  Napi::FunctionReference cb_;
  std::unique_ptr<Napi::AsyncContext> ctx_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New<Open>(env, "open"));
  exports.Set("setOffload", Napi::Function::New<SetOffload>(env, "setOffload"));
  exports.Set("setVnetHdrSize", Napi::Function::New<SetVnetHdrSize>(env, "setVnetHdrSize"));
  exports.Set("TapIo", TapIo::Init(env));
  exports.Set("close", Napi::Function::New<Close>(env, "close"));
  exports.Set("strerror", Napi::Function::New<StrError>(env, "strerror"));
  exports.Set("threadCpuNs", Napi::Function::New<ThreadCpuNs>(env, "threadCpuNs"));
  exports.Set("TapPoll", TapPoll::Init(env));
  // The ABI constants the TypeScript side needs (from the headers this was built with).
  Napi::Object c = Napi::Object::New(env);
  c.Set("IFF_TAP", Napi::Number::New(env, IFF_TAP));
  c.Set("IFF_NO_PI", Napi::Number::New(env, IFF_NO_PI));
  c.Set("IFF_VNET_HDR", Napi::Number::New(env, IFF_VNET_HDR));
  c.Set("IFF_MULTI_QUEUE", Napi::Number::New(env, IFF_MULTI_QUEUE));
  c.Set("TUN_F_CSUM", Napi::Number::New(env, TUN_F_CSUM));
  c.Set("TUN_F_TSO4", Napi::Number::New(env, TUN_F_TSO4));
  c.Set("TUN_F_TSO6", Napi::Number::New(env, TUN_F_TSO6));
  c.Set("TUN_F_TSO_ECN", Napi::Number::New(env, TUN_F_TSO_ECN));
  c.Set("TUN_F_UFO", Napi::Number::New(env, TUN_F_UFO));
  c.Set("TUN_F_USO4", Napi::Number::New(env, TUN_F_USO4));
  c.Set("TUN_F_USO6", Napi::Number::New(env, TUN_F_USO6));
  c.Set("EAGAIN", Napi::Number::New(env, EAGAIN));
  c.Set("EIO", Napi::Number::New(env, EIO));
  c.Set("EINVAL", Napi::Number::New(env, EINVAL));
  c.Set("EBADFD", Napi::Number::New(env, EBADFD));
  c.Set("ENOBUFS", Napi::Number::New(env, ENOBUFS));
  c.Set("EMSGSIZE", Napi::Number::New(env, EMSGSIZE));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(skbuff_tap, Init)
