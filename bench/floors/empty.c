/* The floor of a one-shot command: a program that does nothing. bench/e2e.sh's scenario c
 * times it beside `vigil check`, linked as vigil's two builds are (dynamically against
 * glibc, as the .deb; statically against musl, as the tarball), so the run shows what
 * any process pays to start and exit on this machine before its own work. On the VMs
 * Vigil was measured on, glibc's start reads the cache sizes with a long series of
 * `cpuid`s, each of which traps to the hypervisor. */
int main(void) { return 0; }
