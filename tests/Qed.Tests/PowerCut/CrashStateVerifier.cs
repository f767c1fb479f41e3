using Qed.Backing;
using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.PowerCut;

/// <summary>
/// Checks one crash state of a session against QEMU and the guest model.
/// </summary>
/// <remarks>
/// Rules, in order:
/// <list type="number">
/// <item><c>qemu-img check</c> of the state as the crash left it completes; corruptions are legal only with the need-check bit
/// set (an L2 entry written before the data it points at), and our read-only check counts the same corruptions.</item>
/// <item>A writable open succeeds and its repair leaves the bit clear and no corruption; <c>qemu-img check</c> of the
/// repaired file finds no corruption (leaks are allowed: a crash may cost clusters, never data).</item>
/// <item>Through the repaired image every sector of every region the session touched reads as the guest model allows
/// (flushed requests exactly, unfinished ones old or new per sector), and nothing outside those regions is allocated.</item>
/// <item>A read-only open succeeds and writes nothing (its file refuses writes). It cannot repair, so for a need-check state it
/// may fail a read with <see cref="QedCorruptionException"/> (QEMU's EINVAL), but only for a cluster whose entry the repair
/// drops (unallocated once repaired); every other cluster reads exactly what the repaired image reads. Without the bit no
/// read may fail.</item>
/// <item>Where our read-only open refused a read, QEMU's read-only open (<c>qemu-io -r</c>) of the state refuses the first
/// such read too. For a sample, QEMU's reading of the repaired file (<c>qemu-img convert -O raw</c>) equals ours.</item>
/// </list>
/// </remarks>
internal sealed class CrashStateVerifier
{
    private readonly string _dir;
    private readonly CrashStateGenerator _generator;
    private readonly GuestModel _model;
    private readonly ThreadLocal<FileContent> _scratch = new(() => new FileContent([]));

    public CrashStateVerifier(string dir, CrashStateGenerator generator, GuestModel model)
    {
        _dir = dir;
        _generator = generator;
        _model = model;
    }

    /// <summary>Checks the state <paramref name="recipe"/> describes, in the file <paramref name="fileName"/> of the test directory; throws <see cref="CrashStateException"/> on the first broken rule.</summary>
    public StateOutcome Verify(CrashRecipe recipe, string fileName, bool confirmWithQemu)
    {
        byte[] state = _generator.Materialize(recipe, _scratch.Value).ToArray();
        return VerifyBytes(state, recipe.Durable, recipe.Visible, fileName, confirmWithQemu);
    }

    private StateOutcome VerifyBytes(byte[] state, int durable, int visible, string fileName, bool confirmWithQemu)
    {
        string path = Path.Combine(_dir, fileName);
        File.WriteAllBytes(path, state);
        bool needCheck = QedHeader.Parse(state).NeedsCheck;
        int clusterSize = _model.ClusterSize;

        var qemu = QemuOracle.Check(_dir, fileName);
        Require(qemu.CheckErrors == 0 && qemu.ExitCode is 0 or 2 or 3, $"qemu-img check could not check the state: {qemu}");
        Require(qemu.Corruptions == 0 || needCheck, $"qemu-img check finds {qemu.Corruptions} corruptions but the need-check bit is clear: {qemu}");

        using var readOnly = Open(new MemoryFileAccessor(path, state, readOnly: true), new ImageOpenOptions { ReadOnly = true });
        Require(readOnly.Header.NeedsCheck == needCheck, "the read-only open changed the need-check bit");
        var ourCheck = readOnly.Check();
        Require(ourCheck.Corruptions == qemu.Corruptions && ourCheck.CheckErrors == 0, $"our check finds {ourCheck} where qemu-img check finds {qemu}");

        var writableFile = new MemoryFileAccessor(path, state.ToArray());
        var regions = new List<(long Start, byte[] Bytes)>();
        bool unreadable = false;
        long firstUnreadable = -1;
        using (var writable = Open(writableFile, new ImageOpenOptions()))
        {
            Require(!writable.Header.NeedsCheck, "the writable open left the need-check bit set (its repair found something it cannot fix)");
            var repairedCheck = writable.Check();
            Require(repairedCheck.Corruptions == 0 && repairedCheck.CheckErrors == 0, $"after the repair our check finds {repairedCheck}");

            byte[] cluster = new byte[clusterSize];
            foreach (var (start, end) in _model.Regions)
            {
                byte[] actual = new byte[end - start];
                writable.Read(actual, start);
                string? problem = _model.Check(actual, start, durable, visible);
                Require(problem is null, $"after the repair, {problem}");
                regions.Add((start, actual));

                for (long offset = start; offset < end; offset += clusterSize)
                {
                    int length = (int)Math.Min(clusterSize, end - offset);
                    try
                    {
                        readOnly.Read(cluster.AsMemory(0, length), offset);
                    }
                    catch (QedCorruptionException e)
                    {
                        firstUnreadable = firstUnreadable < 0 ? offset : firstUnreadable;
                        unreadable = true;
                        Require(needCheck, $"the read-only open fails at guest 0x{offset:x} without the need-check bit: {e.Message}");
                        var status = writable.GetStatus(offset, length);
                        Require(status.State == BlockState.Unallocated && status.Length >= length,
                            $"the read-only open fails at guest 0x{offset:x} ({e.Message}) but the repair kept that entry ({status})");
                        continue;
                    }
                    Require(cluster.AsSpan(0, length).SequenceEqual(actual.AsSpan((int)(offset - start), length)),
                        $"the read-only open reads guest 0x{offset:x} differently from the repaired image");
                }
            }
            RequireUnallocatedOutsideRegions(writable);
        }
        if (firstUnreadable >= 0)
        {
            // QEMU's read-only open of the same state refuses the same read (it cannot repair either).
            var read = Tools.Run("qemu-io", ["-r", "-f", "qed", "-c", $"read {firstUnreadable} {clusterSize}", fileName], _dir);
            Require(read.StdOut.Contains("read failed: Invalid argument", StringComparison.Ordinal),
                $"QEMU reads guest 0x{firstUnreadable:x}, which our read-only open refuses: {read}");
        }

        byte[] repaired = writableFile.ToArray();
        Require(!QedHeader.Parse(repaired).NeedsCheck, "the need-check bit is set on disk after the repaired session closed");
        bool changed = !repaired.AsSpan().SequenceEqual(state);
        if (changed)
        {
            File.WriteAllBytes(path, repaired);
        }
        if (changed && (qemu.Corruptions != 0 || !OnlyFeaturesDiffer(state, repaired)))
        {
            var after = QemuOracle.Check(_dir, fileName);
            Require(after.Corruptions == 0 && after.CheckErrors == 0 && after.ExitCode is 0 or 3, $"qemu-img check of the repaired file: {after}");
        }
        if (confirmWithQemu)
        {
            ConfirmWithQemu(fileName, regions);
        }
        return new StateOutcome(needCheck, qemu.Corruptions > 0, changed, unreadable, state.Length % clusterSize != 0, confirmWithQemu, unreadable);
    }

    /// <summary>True when the files differ only in the header's feature bits (the repair cleared need-check and did nothing else, so QEMU's first check still holds).</summary>
    private static bool OnlyFeaturesDiffer(byte[] a, byte[] b)
    {
        const int Start = HeaderLayout.FeaturesOffset, End = HeaderLayout.FeaturesOffset + sizeof(ulong);
        return a.Length == b.Length && a.AsSpan(0, Start).SequenceEqual(b.AsSpan(0, Start)) && a.AsSpan(End).SequenceEqual(b.AsSpan(End));
    }

    private static QedImage Open(FileAccessor file, ImageOpenOptions options) =>
        QedImage.OpenCoreAsync(file, options, BackingChain.Start(file.Path), useAsync: false, CancellationToken.None).GetAwaiter().GetResult();

    private void RequireUnallocatedOutsideRegions(QedImage image)
    {
        long offset = 0;
        foreach (var (start, end) in _model.Regions.Append((_model.DiskSize, _model.DiskSize)))
        {
            while (offset < start)
            {
                var status = image.GetStatus(offset, start - offset);
                Require(status.State == BlockState.Unallocated, $"guest 0x{offset:x}+0x{status.Length:x} is {status.State} though no request touched it");
                offset += status.Length;
            }
            offset = Math.Max(offset, end);
        }
    }

    /// <summary>QEMU's reading of the (repaired) file in the test directory equals ours in every region.</summary>
    private void ConfirmWithQemu(string fileName, List<(long Start, byte[] Bytes)> regions)
    {
        string raw = Path.ChangeExtension(fileName, ".raw");
        try
        {
            Tools.QemuImg(_dir, "convert", "-f", "qed", "-O", "raw", fileName, raw);
            using var handle = File.OpenHandle(Path.Combine(_dir, raw));
            foreach (var (start, bytes) in regions)
            {
                byte[] qemu = new byte[bytes.Length];
                int read = RandomAccess.Read(handle, qemu, start);
                Require(read == bytes.Length && qemu.AsSpan().SequenceEqual(bytes), $"qemu-img convert reads guest 0x{start:x}+0x{bytes.Length:x} differently from us");
            }
        }
        finally
        {
            File.Delete(Path.Combine(_dir, raw));
        }
    }

    private static void Require(bool condition, string? problem)
    {
        if (!condition)
        {
            throw new CrashStateException(problem ?? "failed");
        }
    }
}
