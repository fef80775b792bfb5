/* A tiny MPI program for examples/mpi.py: every rank reports where it runs.
 *
 *   mpicc -O2 -o mpi_hello mpi_hello.c
 *   srun --mpi=pmix -n 2 ./mpi_hello 5
 *
 * All ranks meet in a barrier, hold for the given seconds (so that two runs of it
 * can be seen overlapping), meet again and sum their ranks with MPI_Allreduce
 * (proof that they talk to each other, across nodes too). Rank 0 then prints one
 * JSON line: the size, each rank's host name and pid, the rank sum, and the wall
 * clock (Unix seconds) after the first barrier and after the last.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define HOST_LEN 256

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double hold = argc > 1 ? atof(argv[1]) : 0.0;

    char host[HOST_LEN] = {0};
    gethostname(host, HOST_LEN - 1);
    int pid = (int)getpid();

    MPI_Barrier(MPI_COMM_WORLD);
    double start = now();
    if (hold > 0) {
        usleep((useconds_t)(hold * 1e6));
    }
    int rank_sum = 0;
    MPI_Allreduce(&rank, &rank_sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double end = now();

    char *hosts = NULL;
    int *pids = NULL;
    if (rank == 0) {
        hosts = calloc((size_t)size, HOST_LEN);
        pids = calloc((size_t)size, sizeof(int));
    }
    MPI_Gather(host, HOST_LEN, MPI_CHAR, hosts, HOST_LEN, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Gather(&pid, 1, MPI_INT, pids, 1, MPI_INT, 0, MPI_COMM_WORLD);

    if (rank == 0) {
        printf("{\"size\": %d, \"rank_sum\": %d, \"start\": %.6f, \"end\": %.6f, \"ranks\": [",
               size, rank_sum, start, end);
        for (int r = 0; r < size; r++) {
            printf("%s{\"rank\": %d, \"host\": \"%s\", \"pid\": %d}", r ? ", " : "", r,
                   hosts + (size_t)r * HOST_LEN, pids[r]);
        }
        printf("]}\n");
        fflush(stdout);
        free(hosts);
        free(pids);
    }
    MPI_Finalize();
    return 0;
}
