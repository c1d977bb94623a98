/* comm_gloo.cc — the Gloo backend of comm.h: an extern "C" shim over Debian's libgloo
 * (TCP transport), the one C++ file of src/dist.
 *
 * Rendezvous goes through OUR store (store.h) via a gloo::rendezvous::Store adapter that
 * prefixes every key with the group and generation, so no FileStore or Redis is needed.
 * Every entry point catches every C++ exception and turns it into a ddp_status with the
 * message in words; nothing can throw past this file. Gloo calls are bounded by the
 * communicator's timeout (opts.setTimeout). See DESIGN.md, "Facts checked about Debian's
 * Gloo", for why a failed communicator is replaced rather than reused. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/gather.h>
#include <gloo/math.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/scatter.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

extern "C" {
#include "base/interrupt.h"
#include "dist/comm.h"
}

namespace {

/* Thrown by the store adapter so that the shim can return the store's own status (and by
 * pairwise_all_reduce for a call that differs from the other rank's). */
struct store_failure : std::runtime_error {
    ddp_status status;
    store_failure(ddp_status s, const std::string &msg) : std::runtime_error(msg), status(s) {}
};

/* gloo's Store interface over a store_client, with a key prefix. Waits are sliced so that
 * an abort key (comm_init_options) is noticed within a slice. */
class prefixed_store : public gloo::rendezvous::Store {
  public:
    prefixed_store(store_client *c, std::string prefix, double timeout_s, const char *abort_key)
        : client_(c), prefix_(std::move(prefix)), timeout_s_(timeout_s),
          abort_key_(abort_key ? abort_key : "") {}

    void set(const std::string &key, const std::vector<char> &data) override {
        ddp_status s = store_set(client_, (prefix_ + key).c_str(), data.data(), data.size());
        if (s != DDP_OK) throw store_failure(s, ddp_last_error());
    }

    std::vector<char> get(const std::string &key) override {
        const std::string full = prefix_ + key;
        const auto until =
            std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
        for (;;) {
            double left =
                std::chrono::duration<double>(until - std::chrono::steady_clock::now()).count();
            /* sliced, so that Ctrl-C and another rank's abort are seen within 0.25 s */
            double slice = std::min(left, 0.25);
            char *v = nullptr;
            size_t len = 0;
            ddp_status s = store_get(client_, full.c_str(), slice > 0 ? slice : 0, &v, &len);
            if (s == DDP_OK) {
                std::vector<char> out(v, v + len);
                free(v);
                return out;
            }
            if (s != DDP_ERR_TIMEOUT) throw store_failure(s, ddp_last_error());
            if (ddp_interrupt_pending())
                throw store_failure(DDP_ERR_INTERRUPTED,
                                    "Gloo rendezvous: interrupted (Ctrl-C) while waiting for the "
                                    "other ranks");
            check_abort();
            if (left <= slice) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         "Gloo rendezvous: not every rank of the group arrived within %.3g s "
                         "(every rank must call init_process_group, and new_group, together)",
                         timeout_s_);
                throw store_failure(DDP_ERR_TIMEOUT, msg);
            }
        }
    }

    void wait(const std::vector<std::string> &keys) override {
        for (const auto &k : keys) get(k);
    }

    void wait(const std::vector<std::string> &keys, const std::chrono::milliseconds &) override {
        wait(keys);
    }

  private:
    /* Throws the reason another rank left under the abort key, if it did. */
    void check_abort() {
        if (abort_key_.empty()) return;
        bool present = false;
        if (store_check(client_, abort_key_.c_str(), &present) != DDP_OK || !present) return;
        char *v = nullptr;
        size_t len = 0;
        if (store_get(client_, abort_key_.c_str(), 0, &v, &len) != DDP_OK) return;
        std::string why(v, len);
        free(v);
        throw store_failure(DDP_ERR_COMM, why);
    }

    store_client *client_;
    std::string prefix_;
    double timeout_s_;
    std::string abort_key_;
};

/* The local address from which host is reached: the interface Gloo should listen on. */
std::string local_address_towards(const char *host) {
    if (!host || !*host) return "127.0.0.1";
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    struct addrinfo *res = nullptr;
    if (getaddrinfo(host, "9", &hints, &res) != 0 || !res) return "127.0.0.1";
    std::string out = "127.0.0.1";
    int fd = socket(res->ai_family, SOCK_DGRAM, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
        struct sockaddr_in me;
        socklen_t len = sizeof me;
        char buf[INET_ADDRSTRLEN];
        if (getsockname(fd, reinterpret_cast<sockaddr *>(&me), &len) == 0 &&
            inet_ntop(AF_INET, &me.sin_addr, buf, sizeof buf))
            out = buf;
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    return out;
}

/* Turns the exception being handled into a status; `op` names the collective. */
ddp_status fail_from_exception(const char *op) {
    try {
        throw;
    } catch (const store_failure &e) {
        return ddp_fail_at(__FILE__, __LINE__, e.status, "%s", e.what());
    } catch (const std::exception &e) {
        std::string what = e.what();
        /* Gloo prefixes messages with its source location: keep the part in words */
        size_t bracket = what.rfind("] ");
        std::string words = bracket == std::string::npos ? what : what.substr(bracket + 2);
        if (what.find("Timed out") != std::string::npos)
            return DDP_FAIL(DDP_ERR_TIMEOUT, "%s: timed out inside Gloo (%s)", op, words.c_str());
        return DDP_FAIL(DDP_ERR_COMM, "%s: Gloo failed: %s", op, words.c_str());
    } catch (...) {
        return DDP_FAIL(DDP_ERR_COMM, "%s: Gloo failed with an unknown error", op);
    }
}

using reduce_fn = void (*)(void *, const void *, const void *, size_t);

template <typename T> reduce_fn pick(comm_reduce_op op) {
    switch (op) {
    case COMM_SUM:
    case COMM_AVG:
        return &gloo::sum<T>;
    case COMM_PRODUCT:
        return &gloo::product<T>;
    case COMM_MIN:
        return &gloo::min<T>;
    case COMM_MAX:
        return &gloo::max<T>;
    }
    return nullptr;
}

reduce_fn reduction(dtype dt, comm_reduce_op op) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return pick<float>(op);
    case DTYPE_FLOAT64:
        return pick<double>(op);
    case DTYPE_INT64:
        return pick<int64_t>(op);
    case DTYPE_BOOL:
        return nullptr;
    }
    return nullptr;
}

/* Points a reducing collective's options at buf, typed as Gloo's reduce functions expect
 * (the caller checked that dt has a reduction, so it is not bool). */
template <typename Options>
void set_typed_output(Options &opts, void *buf, dtype dt, size_t count) {
    if (dt == DTYPE_FLOAT32)
        opts.setOutput(static_cast<float *>(buf), count);
    else if (dt == DTYPE_FLOAT64)
        opts.setOutput(static_cast<double *>(buf), count);
    else
        opts.setOutput(static_cast<int64_t *>(buf), count);
}

/* AVG = SUM then divide, as PyTorch's Gloo backend does for floats. */
void divide(void *buf, dtype dt, size_t count, int size) {
    if (dt == DTYPE_FLOAT32) {
        float *p = static_cast<float *>(buf);
        for (size_t i = 0; i < count; i++) p[i] /= static_cast<float>(size);
    } else if (dt == DTYPE_FLOAT64) {
        double *p = static_cast<double *>(buf);
        for (size_t i = 0; i < count; i++) p[i] /= size;
    }
}

/* Whether the rank runs with the collective check off (--no-collective-check). */
bool collective_check_off() {
    const char *check = std::getenv("DDPLAB_COLLECTIVE_CHECK");
    return check && std::strcmp(check, "0") == 0;
}

} // namespace

/* What a rank's pairwise all_reduce is, sent before its data: a rank whose call differs
 * (a size, a dtype or an op; only possible with the collective check off) is named
 * instead of being reduced with bytes it does not understand. */
struct pairwise_header {
    uint64_t count;
    int32_t dt, op;
};

struct gloo_comm : comm {
    std::shared_ptr<gloo::transport::Device> device;
    std::shared_ptr<gloo::rendezvous::Context> ctx;
    std::chrono::milliseconds timeout;
    /* pairwise_all_reduce's receiving side: the other rank's call (its header) and first
     * kAhead bytes arrive in header[turn] and ahead[turn], posted at the end of the call
     * before (ahead_posted); the rest, if any, in rest */
    std::vector<char> ahead_mem;
    std::unique_ptr<gloo::transport::UnboundBuffer> ahead[2];
    pairwise_header headers[2];
    std::unique_ptr<gloo::transport::UnboundBuffer> header[2];
    int turn = 0;
    bool ahead_posted = false;
    std::vector<char> rest;
};

struct gloo_p2p : comm_p2p {
    std::unique_ptr<gloo::transport::UnboundBuffer> buf;
    bool is_send;
    bool done;
};

namespace {

/* std::terminate's handler. Gloo checks what arrives in its own network thread, where no
 * shim can catch: ranks whose calls disagree in size (float64 on one rank, float32 on
 * another, which only the collective check catches first) throw there, and the process
 * must end. It still ends, but with a line that says what happened and what to do,
 * instead of "terminate called after throwing an instance of 'gloo::EnforceNotMet'". */
[[noreturn]] void gloo_terminate() {
    std::string what = "an unknown error";
    if (std::exception_ptr e = std::current_exception()) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception &x) {
            what = x.what();
        } catch (...) {
        }
    }
    bool unchecked = collective_check_off();
    std::fprintf(stderr,
                 "ddplab: Gloo failed inside its network thread, and this rank has to end: "
                 "%s\n%s",
                 what.c_str(),
                 unchecked
                     ? "ddplab: the collective check is off (--no-collective-check): ranks that "
                       "call a collective with different dtypes or sizes (float64 on one, "
                       "float32 on another) break Gloo's messages like this; without that option "
                       "ddplab compares the calls first and names the mismatch\n"
                     : "");
    std::fflush(stderr);
    std::abort();
}

/* Installs gloo_terminate once, before the first Gloo thread starts. */
void install_terminate_handler() {
    static bool installed = false;
    if (!installed) std::set_terminate(gloo_terminate);
    installed = true;
}

/* Gloo opens its listening socket and its pair sockets without SOCK_CLOEXEC, so every
 * program a rank starts (os.execute, io.popen) used to inherit copies of them: a shell
 * left running in the background kept a dead rank's connections open, and held data
 * connections of the process group. Marks every descriptor above stderr close-on-exec
 * (none of a rank's is meant for its children). */
void close_on_exec_all() {
    DIR *dir = opendir("/proc/self/fd");
    if (!dir) return;
    int own = dirfd(dir);
    while (struct dirent *e = readdir(dir)) {
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != own) {
            int flags = fcntl(fd, F_GETFD);
            if (flags >= 0 && !(flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }
    closedir(dir);
}

} // namespace

extern "C" {

extern const comm_ops gloo_ops;

ddp_status comm_gloo_init(const comm_init_options *o, comm **out) {
    *out = nullptr;
    if (o->size < 1 || o->rank < 0 || o->rank >= o->size)
        return DDP_FAIL(DDP_ERR_ARG, "gloo: rank %d is not in a group of %d", o->rank, o->size);
    gloo_comm *c = nullptr;
    install_terminate_handler();
    try {
        c = new gloo_comm;
        c->ops = &gloo_ops;
        c->timeout = std::chrono::milliseconds(static_cast<int64_t>(o->timeout_s * 1000));
        gloo::transport::tcp::attr attr;
        attr.hostname = local_address_towards(o->iface_host);
        c->device = gloo::transport::tcp::CreateDevice(attr);
        c->ctx = std::make_shared<gloo::rendezvous::Context>(o->rank, o->size);
        c->ctx->setTimeout(c->timeout);
        double rdv = o->rendezvous_timeout_s > 0 ? o->rendezvous_timeout_s : o->timeout_s;
        prefixed_store store(o->store, o->prefix ? o->prefix : "", rdv, o->abort_key);
        c->ctx->connectFullMesh(store, c->device);
        /* connectFullMesh can return on one rank while a peer is still finishing its side
         * (seen: a rank that destroyed its context right after init broke a slower peer's
         * rendezvous with "Connection closed by peer"), so end with a barrier, as
         * PyTorch's store-based barrier after init does */
        gloo::BarrierOptions barrier(c->ctx);
        barrier.setTimeout(std::chrono::milliseconds(static_cast<int64_t>(rdv * 1000)));
        gloo::barrier(barrier);
        close_on_exec_all();
        *out = c;
        return DDP_OK;
    } catch (...) {
        delete c;
        return fail_from_exception("init_process_group (Gloo rendezvous)");
    }
}

static void gloo_destroy(comm *base) {
    try {
        delete static_cast<gloo_comm *>(base);
    } catch (...) {
    }
}

/* The slots of the messages this file sends itself: Gloo's own collectives use prefixes
 * 0x01 to 0x08 in the top byte (gloo/types.h) and pg_p2p.c sets bit 62, so bits 60 and 61
 * are free. */
constexpr uint64_t kPairwiseSlot = uint64_t(1) << 60;   /* pairwise_all_reduce */
constexpr uint64_t kListGatherSlot = uint64_t(1) << 61; /* gloo_all_gather_list */

/* How much of each pairwise all_reduce arrives in a buffer posted ahead of the call. */
constexpr size_t kAhead = 256 * 1024;

/* All-reduce between exactly two ranks in one exchange: each sends its whole buffer to the
 * other and reduces locally, where Gloo's ring takes two rounds in a row (reduce-scatter,
 * then all-gather of the halves); the bytes on the wire are the same. Both ranks compute
 * rank 0's value op rank 1's, so they agree bit for bit, and for SUM, PRODUCT, MIN and
 * MAX of numbers that is what the ring gives too (each half of its result is one such
 * operation, and they commute).
 *
 * Gloo's TCP transport sends a message only once the receiver has said it is ready for it
 * (a notification each way first), so each call ends by posting the receives of the next
 * call's header and first kAhead bytes: when the next call comes, the other rank's notices
 * are already here and everything goes out at once, one network latency in all. A receive
 * may be posted bigger than its message (Gloo allows a shorter one), and both ranks follow
 * the same rule on the same sequence of calls, so their sends and receives pair up in
 * order: the header, the first kAhead bytes into ahead[turn], the rest into `rest`. Two
 * sets of buffers take turns, so that the next call's bytes never land in the one being
 * reduced. The header is checked before anything is reduced or the rest is received. */
static void pairwise_all_reduce(gloo_comm *c, void *buf, dtype dt, size_t count,
                                comm_reduce_op op, reduce_fn fn) {
    const int rank = c->ctx->rank, peer = 1 - rank;
    const size_t nbytes = count * dtype_size(dt);
    const size_t head = std::min(nbytes, kAhead), tail = nbytes - head;
    if (c->ahead_mem.empty()) {
        c->ahead_mem.resize(2 * kAhead);
        for (int i = 0; i < 2; i++) {
            c->ahead[i] = c->ctx->createUnboundBuffer(c->ahead_mem.data() + i * kAhead, kAhead);
            c->header[i] = c->ctx->createUnboundBuffer(&c->headers[i], sizeof c->headers[i]);
        }
    }
    auto post_next = [&](int turn) {
        c->header[turn]->recv(peer, kPairwiseSlot);
        c->ahead[turn]->recv(peer, kPairwiseSlot, 0, kAhead);
    };
    if (!c->ahead_posted) post_next(c->turn);
    c->ahead_posted = false;
    pairwise_header mine_header = {count, static_cast<int32_t>(dt), static_cast<int32_t>(op)};
    auto header_out = c->ctx->createUnboundBuffer(&mine_header, sizeof mine_header);
    auto mine = c->ctx->createUnboundBuffer(buf, nbytes);
    header_out->send(peer, kPairwiseSlot);
    mine->send(peer, kPairwiseSlot, 0, head);
    if (tail > 0) mine->send(peer, kPairwiseSlot, head, tail);
    auto wait = [&](bool ok) {
        if (!ok) throw std::runtime_error("the exchange with the other rank was aborted");
    };
    wait(c->header[c->turn]->waitRecv(c->timeout));
    const pairwise_header &theirs_header = c->headers[c->turn];
    if (theirs_header.count != count || theirs_header.dt != mine_header.dt ||
        theirs_header.op != mine_header.op) {
        const pairwise_header &h = theirs_header;
        bool known = h.dt >= 0 && h.dt <= DTYPE_BOOL && h.op >= COMM_SUM && h.op <= COMM_MAX;
        char msg[512];
        std::snprintf(msg, sizeof msg,
                      "the two ranks called it differently: this rank with %s[%zu], op=%s; "
                      "rank %d with %s[%llu], op=%s%s",
                      dtype_name(dt), count, comm_reduce_op_name(op), peer,
                      known ? dtype_name(static_cast<dtype>(h.dt)) : "?",
                      static_cast<unsigned long long>(h.count),
                      known ? comm_reduce_op_name(static_cast<comm_reduce_op>(h.op)) : "?",
                      collective_check_off()
                          ? " (the collective check is off, --no-collective-check: every rank "
                            "must call each collective with the same shapes, dtypes and op)"
                          : "");
        throw store_failure(DDP_ERR_MISMATCH, std::string("all_reduce: ") + msg);
    }
    /* the rest is received only now: a longer rest than this rank expects would end the
     * process in Gloo's network thread */
    std::unique_ptr<gloo::transport::UnboundBuffer> second;
    if (tail > 0) {
        if (c->rest.size() < tail) c->rest.resize(tail);
        second = c->ctx->createUnboundBuffer(c->rest.data(), tail);
        second->recv(peer, kPairwiseSlot);
    }
    wait(c->ahead[c->turn]->waitRecv(c->timeout));
    if (tail > 0) wait(second->waitRecv(c->timeout));
    wait(header_out->waitSend(c->timeout));
    wait(mine->waitSend(c->timeout));
    if (tail > 0) wait(mine->waitSend(c->timeout));
    const char *theirs = c->ahead_mem.data() + c->turn * kAhead;
    c->turn ^= 1;
    /* this call is complete: a peer that has closed since (its program ended after its
     * last call) must not fail it; the next call, if any, posts again and fails then */
    try {
        post_next(c->turn);
        c->ahead_posted = true;
    } catch (...) {
    }
    /* the reduction, in elements: head and tail hold whole elements, since kAhead is a
     * multiple of every element size */
    char *out = static_cast<char *>(buf);
    const size_t head_count = head / dtype_size(dt), tail_count = count - head_count;
    fn(out, rank == 0 ? out : theirs, rank == 0 ? theirs : out, head_count);
    if (tail > 0) {
        const char *rest = c->rest.data();
        fn(out + head, rank == 0 ? out + head : rest, rank == 0 ? rest : out + head, tail_count);
    }
}

static ddp_status gloo_all_reduce(comm *base, void *buf, dtype dt, size_t count,
                                  comm_reduce_op op) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    reduce_fn fn = reduction(dt, op);
    if (!fn) return DDP_FAIL(DDP_ERR_ARG, "all_reduce: dtype %s is not supported", dtype_name(dt));
    if (count == 0) return DDP_OK;
    try {
        if (c->ctx->size == 2) {
            pairwise_all_reduce(c, buf, dt, count, op, fn);
            if (op == COMM_AVG) divide(buf, dt, count, 2);
            return DDP_OK;
        }
        gloo::AllreduceOptions opts(c->ctx);
        set_typed_output(opts, buf, dt, count);
        opts.setReduceFunction(fn);
        opts.setTimeout(c->timeout);
        gloo::allreduce(opts);
    } catch (...) {
        return fail_from_exception("all_reduce");
    }
    if (op == COMM_AVG) divide(buf, dt, count, c->ctx->size);
    return DDP_OK;
}

static ddp_status gloo_reduce(comm *base, void *buf, dtype dt, size_t count, comm_reduce_op op,
                              int root) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    reduce_fn fn = reduction(dt, op);
    if (!fn) return DDP_FAIL(DDP_ERR_ARG, "reduce: dtype %s is not supported", dtype_name(dt));
    if (count == 0) return DDP_OK;
    try {
        gloo::ReduceOptions opts(c->ctx);
        set_typed_output(opts, buf, dt, count);
        opts.setRoot(root);
        opts.setReduceFunction(fn);
        opts.setTimeout(c->timeout);
        gloo::reduce(opts);
    } catch (...) {
        return fail_from_exception("reduce");
    }
    if (op == COMM_AVG && c->ctx->rank == root) divide(buf, dt, count, c->ctx->size);
    return DDP_OK;
}

static ddp_status gloo_broadcast(comm *base, void *buf, dtype dt, size_t count, int root) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    size_t n = count * dtype_size(dt);
    if (n == 0) return DDP_OK;
    try {
        gloo::BroadcastOptions opts(c->ctx);
        opts.setOutput(static_cast<uint8_t *>(buf), n);
        opts.setRoot(root);
        opts.setTimeout(c->timeout);
        gloo::broadcast(opts);
    } catch (...) {
        return fail_from_exception("broadcast");
    }
    return DDP_OK;
}

static ddp_status gloo_all_gather(comm *base, const void *in, void *out, dtype dt, size_t count) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    size_t n = count * dtype_size(dt);
    if (n == 0) return DDP_OK;
    try {
        gloo::AllgatherOptions opts(c->ctx);
        opts.setInput(const_cast<uint8_t *>(static_cast<const uint8_t *>(in)), n);
        opts.setOutput(static_cast<uint8_t *>(out), n * c->ctx->size);
        opts.setTimeout(c->timeout);
        gloo::allgather(opts);
    } catch (...) {
        return fail_from_exception("all_gather");
    }
    return DDP_OK;
}


/* Gloo's allgather wants one output buffer, which for a list of tensors would cost a
 * staging buffer and a copy out of it (a third more memory traffic at 64 MiB). This is the
 * same ring over Gloo's unbound buffers, pointed at each rank's own tensor: in round r a
 * rank sends to its right neighbour the segment it received in round r - 1 (its own in
 * round 0) while it receives the next one from its left. Each segment travels in two
 * halves, so that one half is on the wire while the other is still arriving. */
static ddp_status gloo_all_gather_list(comm *base, const void *in, void *const *outs, dtype dt,
                                       size_t count) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    const size_t n = count * dtype_size(dt);
    const int size = c->ctx->size, rank = c->ctx->rank;
    if (n == 0) return DDP_OK;
    if (outs[rank] != in) memmove(outs[rank], in, n);
    if (size == 1) return DDP_OK;
    try {
        const int right = (rank + 1) % size, left = (rank + size - 1) % size;
        const int halves = n >= 2 ? 2 : 1;
        const size_t part[2] = {halves == 2 ? n / 2 : n, n - n / 2};
        std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> seg(size * halves);
        for (int s = 0; s < size; s++)
            for (int h = 0; h < halves; h++)
                seg[s * halves + h] = c->ctx->createUnboundBuffer(
                    static_cast<char *>(outs[s]) + (h ? part[0] : 0), part[h]);
        gloo::transport::UnboundBuffer *sending[2] = {nullptr, nullptr};
        gloo::transport::UnboundBuffer *receiving[2] = {nullptr, nullptr};
        auto settle = [&](int h) {
            if (sending[h] && !sending[h]->waitSend(c->timeout))
                throw std::runtime_error("a send was aborted");
            if (receiving[h] && !receiving[h]->waitRecv(c->timeout))
                throw std::runtime_error("a receive was aborted");
        };
        for (int r = 0; r < size - 1; r++) {
            const int send_seg = (rank - r + size) % size, recv_seg = (rank - r - 1 + size) % size;
            for (int h = 0; h < halves; h++) {
                settle(h); /* the half we forward now is the one that arrived last round */
                sending[h] = seg[send_seg * halves + h].get();
                receiving[h] = seg[recv_seg * halves + h].get();
                sending[h]->send(right, kListGatherSlot, 0, part[h]);
                receiving[h]->recv(left, kListGatherSlot, 0, part[h]);
            }
        }
        for (int h = 0; h < halves; h++) settle(h);
    } catch (...) {
        return fail_from_exception("all_gather");
    }
    return DDP_OK;
}

static ddp_status gloo_gather(comm *base, const void *in, void *out, dtype dt, size_t count,
                              int root) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    size_t n = count * dtype_size(dt);
    if (n == 0) return DDP_OK;
    try {
        gloo::GatherOptions opts(c->ctx);
        opts.setInput(const_cast<uint8_t *>(static_cast<const uint8_t *>(in)), n);
        if (c->ctx->rank == root) opts.setOutput(static_cast<uint8_t *>(out), n * c->ctx->size);
        opts.setRoot(root);
        opts.setTimeout(c->timeout);
        gloo::gather(opts);
    } catch (...) {
        return fail_from_exception("gather");
    }
    return DDP_OK;
}

static ddp_status gloo_scatter(comm *base, const void *in, void *out, dtype dt, size_t count,
                               int root) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    size_t n = count * dtype_size(dt);
    if (n == 0) return DDP_OK;
    try {
        gloo::ScatterOptions opts(c->ctx);
        if (c->ctx->rank == root) {
            std::vector<uint8_t *> ptrs;
            for (int i = 0; i < c->ctx->size; i++)
                ptrs.push_back(const_cast<uint8_t *>(static_cast<const uint8_t *>(in)) + i * n);
            opts.setInputs(ptrs, n);
        }
        opts.setOutput(static_cast<uint8_t *>(out), n);
        opts.setRoot(root);
        opts.setTimeout(c->timeout);
        gloo::scatter(opts);
    } catch (...) {
        return fail_from_exception("scatter");
    }
    return DDP_OK;
}

static ddp_status gloo_barrier(comm *base) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    try {
        gloo::BarrierOptions opts(c->ctx);
        opts.setTimeout(c->timeout);
        gloo::barrier(opts);
    } catch (...) {
        return fail_from_exception("barrier");
    }
    return DDP_OK;
}

/* Posts one direction of a point-to-point message. */
static ddp_status p2p_post(gloo_comm *c, void *buf, size_t nbytes, int peer, uint64_t tag,
                           bool is_send, comm_p2p **out) {
    *out = nullptr;
    const char *op = is_send ? "send" : "recv";
    if (peer < 0 || peer >= c->ctx->size || peer == c->ctx->rank)
        return DDP_FAIL(DDP_ERR_ARG, "%s: peer %d is not another rank of the group", op, peer);
    gloo_p2p *p = nullptr;
    try {
        p = new gloo_p2p;
        p->ops = &gloo_ops;
        p->is_send = is_send;
        p->done = false;
        /* Gloo refuses zero-byte buffers; a 1-byte scratch keeps the message pairing */
        static thread_local char scratch;
        bool empty = nbytes == 0;
        p->buf = c->ctx->createUnboundBuffer(empty ? &scratch : buf, empty ? 1 : nbytes);
        if (is_send)
            p->buf->send(peer, tag);
        else
            p->buf->recv(peer, tag);
        *out = p;
        return DDP_OK;
    } catch (...) {
        delete p;
        return fail_from_exception(op);
    }
}

static ddp_status gloo_send_post(comm *base, const void *buf, size_t nbytes, int peer, uint64_t tag,
                                 comm_p2p **out) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    return p2p_post(c, const_cast<void *>(buf), nbytes, peer, tag, true, out);
}

static ddp_status gloo_recv_post(comm *base, void *buf, size_t nbytes, int peer, uint64_t tag,
                                 comm_p2p **out) {
    gloo_comm *c = static_cast<gloo_comm *>(base);
    return p2p_post(c, buf, nbytes, peer, tag, false, out);
}

static ddp_status gloo_p2p_wait(comm_p2p *base, int timeout_ms) {
    gloo_p2p *p = static_cast<gloo_p2p *>(base);
    if (p->done) return DDP_OK;
    try {
        auto t = std::chrono::milliseconds(timeout_ms);
        bool ok = p->is_send ? p->buf->waitSend(nullptr, t) : p->buf->waitRecv(nullptr, t);
        if (!ok) return DDP_FAIL(DDP_ERR_COMM, "%s: aborted", p->is_send ? "send" : "recv");
        p->done = true;
        return DDP_OK;
    } catch (...) {
        return fail_from_exception(p->is_send ? "send" : "recv");
    }
}

static void gloo_p2p_abort(comm_p2p *base) {
    gloo_p2p *p = static_cast<gloo_p2p *>(base);
    try {
        if (p->is_send)
            p->buf->abortWaitSend();
        else
            p->buf->abortWaitRecv();
    } catch (...) {
    }
}

static void gloo_p2p_free(comm_p2p *base) {
    gloo_p2p *p = static_cast<gloo_p2p *>(base);
    if (!p->done) gloo_p2p_abort(p);
    try {
        delete p;
    } catch (...) {
    }
}

/* No abort: Gloo cannot wake a started collective, so pg_worker.c abandons it instead. */
const comm_ops gloo_ops = {
    "gloo",         gloo_destroy,    gloo_all_reduce,      gloo_reduce,
    gloo_broadcast, gloo_all_gather, gloo_all_gather_list, gloo_gather,
    gloo_scatter,   gloo_barrier,    gloo_send_post,       gloo_recv_post,
    gloo_p2p_wait,  gloo_p2p_abort,  gloo_p2p_free,        nullptr,
};

} /* extern "C" */
