/* gloo_raw.cc — the reference side of bench/collectives.sh: Gloo called directly from
 * C++, with nothing of ddplab in between, so that the difference to ddplab's Lua API
 * (bench/collectives.lua) is exactly what ddplab adds.
 *
 * It forks N rank processes on this machine; they meet through a gloo FileStore in a
 * fresh temporary directory and connect over the TCP transport on 127.0.0.1, as ddplab's
 * ranks do. Each collective is called the way src/dist/comm_gloo.cc calls it (same
 * option objects, same reduce function, same element types: float for all_reduce, bytes
 * for broadcast and all_gather), and timed with the same schedule as collectives.lua:
 * for each size, WARMUP calls, then WINDOWS windows of k back-to-back calls behind a
 * barrier, k = clamp(WINDOW_BYTES / bytes, 1, MAX_CALLS). Rank 0 prints one line per op
 * and size, "RESULT <op> <ranks> <bytes> <seconds per call in the fastest window>" (the
 * fastest, not the median: on a shared machine the noise only ever adds time),
 * where bytes is the tensor size (all_reduce, broadcast) or the whole gathered output
 * (all_gather), as nccl-tests counts them.
 *
 * usage: gloo_raw [-n N] [--min-bytes B] [--max-bytes B] [--windows W] [--ops
 * all_reduce,broadcast,...] A benchmark, not a test: it asserts nothing about time. It exits
 * non-zero only when a rank fails (the reason is printed). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <memory>
#include <string>
#include <vector>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>

namespace {

/* The schedule; bench/collectives_lib.lua holds the same numbers for collectives.lua. */
const int WARMUP = 2;
const double WINDOW_BYTES = 8.0 * 1024 * 1024;
const int MAX_CALLS = 10;

struct options {
    int nranks = 2;
    int64_t min_bytes = 4;
    int64_t max_bytes = 64LL * 1024 * 1024;
    int windows = 5;
    std::string ops = "all_reduce,broadcast,all_gather";
};

/* Calls per window for a collective that moves `bytes` (see the file comment). */
int calls_per_window(int64_t bytes) {
    int k = static_cast<int>(WINDOW_BYTES / static_cast<double>(bytes));
    return std::max(1, std::min(MAX_CALLS, k));
}

double now_seconds() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

/* One rank's benchmark state: its context and the buffers of the current size. */
struct rank_bench {
    std::shared_ptr<gloo::rendezvous::Context> ctx;
    std::chrono::milliseconds timeout{60000};
    std::vector<float> data;  /* all_reduce: the tensor */
    std::vector<uint8_t> in;  /* broadcast: the tensor; all_gather: this rank's part */
    std::vector<uint8_t> out; /* all_gather: the gathered output */
};

/* As comm_all_reduce in src/dist/comm_gloo.cc, float32, SUM. */
void run_all_reduce(rank_bench &b) {
    gloo::AllreduceOptions opts(b.ctx);
    opts.setOutput(b.data.data(), b.data.size());
    opts.setReduceFunction(
        static_cast<void (*)(void *, const void *, const void *, size_t)>(&gloo::sum<float>));
    opts.setTimeout(b.timeout);
    gloo::allreduce(opts);
}

/* As comm_broadcast: the tensor as bytes, root 0. */
void run_broadcast(rank_bench &b) {
    gloo::BroadcastOptions opts(b.ctx);
    opts.setOutput(b.in.data(), b.in.size());
    opts.setRoot(0);
    opts.setTimeout(b.timeout);
    gloo::broadcast(opts);
}

/* As comm_all_gather: bytes in, size times as many bytes out. */
void run_all_gather(rank_bench &b) {
    gloo::AllgatherOptions opts(b.ctx);
    opts.setInput(b.in.data(), b.in.size());
    opts.setOutput(b.out.data(), b.out.size());
    opts.setTimeout(b.timeout);
    gloo::allgather(opts);
}

void run_barrier(rank_bench &b) {
    gloo::BarrierOptions opts(b.ctx);
    opts.setTimeout(b.timeout);
    gloo::barrier(opts);
}

/* Times `op` at every size on this rank; rank 0 prints the RESULT lines. Throws on a
 * Gloo failure. */
void sweep(rank_bench &b, const std::string &op, const options &o) {
    int n = b.ctx->size;
    for (int64_t bytes = 4; bytes <= o.max_bytes; bytes *= 4) {
        if (bytes < o.min_bytes) continue;
        void (*call)(rank_bench &) = nullptr;
        if (op == "all_reduce") {
            b.data.assign(static_cast<size_t>(bytes / 4), 0.0f);
            call = run_all_reduce;
        } else if (op == "broadcast") {
            b.in.assign(static_cast<size_t>(bytes), 0);
            call = run_broadcast;
        } else if (op == "all_gather") {
            if (bytes % (4 * n) != 0) continue; /* each rank sends whole float32s */
            b.in.assign(static_cast<size_t>(bytes / n), 0);
            b.out.assign(static_cast<size_t>(bytes), 0);
            call = run_all_gather;
        } else {
            throw std::runtime_error("unknown op " + op);
        }
        for (int i = 0; i < WARMUP; i++) call(b);
        int k = calls_per_window(bytes);
        std::vector<double> per_call;
        for (int w = 0; w < o.windows; w++) {
            run_barrier(b);
            double t0 = now_seconds();
            for (int i = 0; i < k; i++) call(b);
            per_call.push_back((now_seconds() - t0) / k);
        }
        if (b.ctx->rank == 0) {
            printf("RESULT %s %d %lld %.9f\n", op.c_str(), n, static_cast<long long>(bytes),
                   *std::min_element(per_call.begin(), per_call.end()));
            fflush(stdout);
        }
    }
}

/* The body of one forked rank; returns its exit status. */
int rank_main(int rank, const options &o, const std::string &dir) {
    try {
        rank_bench b;
        gloo::transport::tcp::attr attr;
        attr.hostname = "127.0.0.1";
        auto device = gloo::transport::tcp::CreateDevice(attr);
        gloo::rendezvous::FileStore store(dir);
        b.ctx = std::make_shared<gloo::rendezvous::Context>(rank, o.nranks);
        b.ctx->setTimeout(b.timeout);
        b.ctx->connectFullMesh(store, device);
        size_t start = 0;
        while (start <= o.ops.size()) {
            size_t comma = o.ops.find(',', start);
            if (comma == std::string::npos) comma = o.ops.size();
            std::string op = o.ops.substr(start, comma - start);
            if (!op.empty()) sweep(b, op, o);
            start = comma + 1;
        }
        run_barrier(b);
        return 0;
    } catch (const std::exception &e) {
        fprintf(stderr, "gloo_raw: rank %d failed: %s\n", rank, e.what());
        return 1;
    }
}

int usage(const char *prog) {
    fprintf(stderr,
            "usage: %s [-n N] [--min-bytes B] [--max-bytes B] [--windows W] [--ops "
            "all_reduce,broadcast,"
            "all_gather]\n",
            prog);
    return 2;
}

} // namespace

int main(int argc, char **argv) {
    options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) return usage(argv[0]);
        if (a == "-n")
            o.nranks = atoi(argv[++i]);
        else if (a == "--min-bytes")
            o.min_bytes = atoll(argv[++i]);
        else if (a == "--max-bytes")
            o.max_bytes = atoll(argv[++i]);
        else if (a == "--windows")
            o.windows = atoi(argv[++i]);
        else if (a == "--ops")
            o.ops = argv[++i];
        else
            return usage(argv[0]);
    }
    if (o.nranks < 2 || o.windows < 1 || o.max_bytes < 4) return usage(argv[0]);

    char dir[] = "/tmp/gloo_raw.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("gloo_raw: mkdtemp");
        return 1;
    }
    std::vector<pid_t> pids;
    for (int r = 0; r < o.nranks; r++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            perror("gloo_raw: fork");
            return 1;
        }
        if (pid == 0) _exit(rank_main(r, o, dir));
        pids.push_back(pid);
    }
    int failed = 0;
    for (pid_t pid : pids) {
        int status = 0;
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = 1;
    }
    /* the FileStore leaves one file per key behind */
    std::string rm = std::string("rm -rf '") + dir + "'";
    if (system(rm.c_str()) != 0) fprintf(stderr, "gloo_raw: could not remove %s\n", dir);
    return failed;
}
