// Snapshots of Sessions: capture at a wait point, restore from a chain, and
// replay of requests on a restore. This is the layer over the runtime
// (runtime/session.h) and the file format (image.h, reader.h); each
// component saves and restores itself (vmm/vcpu_state.h for the vCPU,
// snapshot/monitor_state.h for the monitor, memory here), and a snapshot
// aggregates them.
//
// A chain is a full snapshot and then diffs, each over the one before. Its
// links may be files (raw page runs are mapped copy-on-write, never copied,
// except runs too small to be worth a mapping) or images in memory (a
// SnapshotFile parsed from bytes), so that snapgen, merge verification and
// the serving mode need no temporary files.
#pragma once

#include "presnap/error.h"
#include "presnap/runtime/session.h"
#include "presnap/snapshot/image.h"
#include "presnap/snapshot/reader.h"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace presnap::snapshot {

// The executable a snapshot was made from, as recorded in it, if it is still
// at that path with the same content (tracing needs its symbols' addresses).
Result<std::string> recorded_executable(const SnapshotFile& snapshot);

// ---- Restore ----

struct RestoreOptions {
    runtime::SessionOptions session;
    // Bring the chain's recorded working set into memory in bulk before the
    // first request (MADV_POPULATE_WRITE).
    bool prefetch = false;
    // Clear the accessed bits first, so that a capture or replay records the
    // working set of what runs after the restore.
    bool record_working_set = false;
};

// Opens and validates snapshot files (restore() checks that they form a
// chain). `data_check` says how much of the page data is checked: by
// default the PAGE_DATA checksum (one pass), so that a damaged page never
// reaches a guest unnoticed.
Result<std::vector<SnapshotFile>> open_chain(const std::vector<std::string>& paths,
                                             DataCheck data_check = DataCheck::kSection);
// Pointers to the files of an open chain, in order, as restore() takes them.
std::vector<const SnapshotFile*> links_of(const std::vector<SnapshotFile>& files);

// Checks the links of an already open chain (kinds, parents, host CPU).
Status check_chain(std::span<const SnapshotFile* const> chain);

// A Session waiting at the wait point of the chain's last snapshot. The
// files must stay open while the Session lives (their pages are mapped).
Result<std::unique_ptr<runtime::Session>> restore(std::span<const SnapshotFile* const> chain,
                                                  const RestoreOptions& options);

// The same into a Session that already exists (a pooled VM): it is reset,
// then restored; its memory size must be the chain's. Saves creating the VM
// and its vCPU.
Status restore_into(runtime::Session& session, std::span<const SnapshotFile* const> chain,
                    const RestoreOptions& options);

// ---- Capture ----

// The session, booted cold for a base snapshot: dirty tracking on, and the
// executable's hash recorded for the snapshot.
Result<std::unique_ptr<runtime::Session>> boot_for_capture(const runtime::ProgramSpec& spec,
                                                           runtime::SessionOptions options);

struct Capture {
    // Page data is borrowed from the session's memory: write or serialize
    // the image before the session runs again.
    SnapshotImage image;
    uint64_t pages_dirtied = 0;    // since boot, restore or the last capture
    std::vector<uint64_t> touched; // the working set recorded in the image, sorted
};

// Captures a Session at its wait point: a full snapshot after a cold boot,
// a diff over session.parent otherwise. Dirty tracking restarts; call
// adopt() with the written snapshot's hash to capture diffs over it later.
Result<Capture> capture(runtime::Session& session);
// Replaces the working set the capture recorded (e.g. with what a replay of
// a later request touched), in the image and in its metadata.
void set_working_set(Capture& capture, std::vector<uint64_t> pages);
// The session's memory is now that of the snapshot with `content_hash`.
void adopt(runtime::Session& session, const Hash128& content_hash);

// capture() + write_snapshot() + adopt().
Result<WriteSummary> capture_to_file(runtime::Session& session, const std::string& path,
                                     const WriteOptions& options = {});
// capture() + serialize_snapshot() + adopt(): a snapshot in memory, no file.
Result<SnapshotFile> capture_to_memory(runtime::Session& session, const WriteOptions& options = {});

// Opens snapshot bytes from a sealed memfd (validated like a file), so that
// restores map their raw runs copy-on-write instead of copying them.
Result<SnapshotFile> memory_file(std::span<const uint8_t> bytes, const OpenOptions& options = {});

// Writes `image` to memory and opens it (a snapshot one can restore): a
// sealed memfd, so that restores map its raw runs as they would a file's.
Result<SnapshotFile> to_memory(const SnapshotImage& image, const WriteOptions& options = {},
                               WriteSummary* summary = nullptr);

// ---- Replay ----

struct ReplayResult {
    runtime::RunOutcome outcome; // kWaiting when every request was answered
    std::vector<std::string> responses;
    std::vector<runtime::RequestInfo> requests;
    std::vector<uint64_t> touched; // pages the requests touched (the working set)
    runtime::RunStats stats;
};

// Restores `chain` in a fresh Session, serves `requests` (lines), stops at
// the wait point after the last one and reports responses, timings and the
// pages touched.
Result<ReplayResult> replay(std::span<const SnapshotFile* const> chain,
                            const std::vector<std::string>& requests,
                            const runtime::SessionOptions& options);

// Sorted page numbers as runs of consecutive pages.
std::vector<PageRange> to_ranges(std::span<const uint64_t> pages);

} // namespace presnap::snapshot
