/* The pod sandbox's process, as Kubernetes' own pause: holds the pod's namespaces, reaps orphans,
 * exits 0 on SIGINT or SIGTERM. Built static by hack/build-images.sh into mnist-operator.local/pause. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signum) {
  (void)signum;
  _exit(0);
}

static void reap(int signum) {
  (void)signum;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction on_stop = {.sa_handler = stop};
  struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &on_stop, NULL) < 0 || sigaction(SIGTERM, &on_stop, NULL) < 0 ||
      sigaction(SIGCHLD, &on_child, NULL) < 0) {
    return 1;
  }
  for (;;) {
    pause();
  }
}
