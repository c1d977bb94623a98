/* rank.h — the rank process: one Lua state that runs the chunks the driver sends over
 * the control channel (worker mode), or a script on its own under an outside launcher
 * such as torchrun or SLURM (standalone mode). main() picks between them. */
#ifndef DDP_RUNTIME_RANK_H
#define DDP_RUNTIME_RANK_H

#include <stdbool.h>

/* Entry of a rank process: main() calls it when getenv("DDPLAB_RANK_WORKER") is set.
 * Connects to the driver's control socket (DDPLAB_CONTROL) and serves chunks until the
 * driver says goodbye or goes away. Returns the process exit status. */
int rank_worker_main(void);

/* True when RANK+WORLD_SIZE (torchrun) or SLURM_PROCID+SLURM_NTASKS are set and this
 * process is not a worker started by a ddplab driver. */
bool rank_launched_externally(void);

/* Script mode under an outside launcher: this process is the rank, its output goes
 * unlabelled to its own stdout; rank 0 hosts the rendezvous store. Runs `script` (a
 * path, with arg[1..] = argv[0..argc-1]) or, when script is NULL, `chunk`. Returns the
 * exit status (0 on success, 1 when the script raised an error). */
int rank_run_standalone(const char *script, const char *chunk, int argc, char **argv);

#endif
