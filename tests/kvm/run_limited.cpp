// Test harness: runs a command with a wall-time limit and reports its peak
// resident memory, so the hostile-guest tests can prove the host stayed
// within a memory bound and never hung.
//   run_limited MAX_RSS_MB TIMEOUT_S COMMAND [ARGS...]
// Exit status: the command's (128 + N if killed by signal N); 201 if its peak
// RSS exceeded MAX_RSS_MB; 202 if it ran past TIMEOUT_S (it is killed).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: run_limited MAX_RSS_MB TIMEOUT_S COMMAND [ARGS...]\n");
        return 2;
    }
    long max_rss_mb = std::atol(argv[1]);
    double timeout_s = std::atof(argv[2]);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[3], argv + 3);
        std::perror("run_limited: exec");
        _exit(127);
    }
    timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = 0;
    rusage ru{};
    bool timed_out = false;
    for (;;) {
        pid_t r = wait4(pid, &status, WNOHANG, &ru);
        if (r == pid)
            break;
        timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed =
            double(now.tv_sec - start.tv_sec) + double(now.tv_nsec - start.tv_nsec) / 1e9;
        if (elapsed > timeout_s && !timed_out) {
            kill(pid, SIGKILL);
            timed_out = true;
        }
        usleep(2000);
    }
    long rss_mb = ru.ru_maxrss / 1024;
    std::fprintf(stderr, "run_limited: peak rss %ld MiB (limit %ld MiB)\n", rss_mb, max_rss_mb);
    if (timed_out) {
        std::fprintf(stderr, "run_limited: command ran past %g s and was killed\n", timeout_s);
        return 202;
    }
    if (rss_mb > max_rss_mb) {
        std::fprintf(stderr, "run_limited: peak rss %ld MiB exceeds %ld MiB\n", rss_mb, max_rss_mb);
        return 201;
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
