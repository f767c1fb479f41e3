using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash.Faults;

/// <summary>
/// A scripted image session for fault injection. It opens a dirty image (need-check and an auto-clear bit set, an
/// invalid L2 entry, an invalid L1 entry, leaked clusters at the end), so that the open rewrites the header and repairs;
/// runs a fixed list of requests (unaligned multi-cluster writes in place and allocating, two new L2 tables, allocation
/// over zero clusters, write-zeroes whole and partial, flushes) with a two-slice L2 cache so tables reload from disk;
/// and closes (flush, need-check clear). <see cref="RunAsync"/> runs it over a <see cref="FaultyFileAccessor"/> and
/// asserts what every fault must leave true.
/// </summary>
internal sealed class FaultSession
{
    public const int ClusterSize = 4096;

    /// <summary>Clusters per table: 2, the smallest QEMU opens (it rejects every table offset when it is 1).</summary>
    public const int TableSize = 2;

    /// <summary>Guest bytes one L2 table maps: 1024 entries of 4 KiB.</summary>
    public const long TableSpan = (long)TableSize * ClusterSize / sizeof(ulong) * ClusterSize;

    /// <summary>Two whole tables' span and a part of a third.</summary>
    public const long Size = 2 * TableSpan + (1 << 20);

    private static readonly ImageOpenOptions s_options = new() { L2SliceSize = 512, L2CacheSize = 2 * 512 };

    private readonly TempDirectory _dir;
    private readonly string _template;
    private readonly string _path;
    private readonly byte[] _initial;
    private readonly SessionOp[] _script;
    private readonly SessionOp _probe;

    private FaultSession(TempDirectory dir, string template, byte[] initial, SessionOp[] script, SessionOp probe)
    {
        _dir = dir;
        _template = template;
        _path = dir.File("session.qed");
        _initial = initial;
        _script = script;
        _probe = probe;
    }

    /// <summary>Builds the dirty template image (and its backing file) in <paramref name="dir"/> and learns what it reads as once repaired.</summary>
    public static FaultSession Prepare(TempDirectory dir, bool withBacking, Random random)
    {
        string template = dir.File("template.qed");
        if (withBacking)
        {
            byte[] backing = new byte[TableSpan + 300_001];
            random.NextBytes(backing);
            File.WriteAllBytes(dir.File("b.raw"), backing);
        }
        QedImage.Create(template, new QedCreateOptions { Size = Size, ClusterSize = ClusterSize, TableSize = TableSize, BackingFile = withBacking ? "b.raw" : null, BackingFormat = withBacking ? "raw" : null });
        using (var image = QedImage.Open(template))
        {
            image.Write(Bytes(random, 40 * 1024), 0);
            image.Write(Bytes(random, 8 * 1024), 1 << 20);
            image.Write(Bytes(random, 8 * 1024), TableSpan + 64 * 1024);
        }

        // Make it dirty: the writable open must rewrite the header (auto-clear bit) and repair before use.
        var header = Img.FileHeader(template);
        long l1 = (long)header.L1TableOffset;
        ulong table0 = Img.FileU64(template, l1);
        Assert.NotEqual(0UL, table0);
        Assert.NotEqual(0UL, Img.FileU64(template, l1 + sizeof(ulong)));
        long length = Img.FileLength(template);
        ulong beyondEnd = (ulong)(length + 64 * ClusterSize);
        Tools.PokeU64(template, (long)table0 + 300 * sizeof(ulong), beyondEnd);
        Tools.PokeU64(template, l1 + sizeof(ulong), beyondEnd);
        using (var stream = new FileStream(template, FileMode.Open, FileAccess.Write))
        {
            stream.SetLength(length + 3 * ClusterSize);
        }
        Img.WriteHeader(template, header with { Features = header.Features | QedFeatures.NeedCheck, AutoclearFeatures = 1 });

        // What the image reads as once the open repaired it, learnt from an unfaulted open of a copy.
        string repaired = dir.File("repaired.qed");
        File.Copy(template, repaired);
        byte[] initial = new byte[Size];
        using (var image = QedImage.Open(repaired))
        {
            Assert.False(image.Header.NeedsCheck, "the unfaulted open did not repair the template");
            image.Read(initial, 0);
        }
        var check = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", repaired);
        Assert.True(check.ExitCode is 0 or 3, $"qemu-img check of the repaired template: {check}");
        File.Delete(repaired);

        const long C = ClusterSize, S = TableSpan;
        SessionOp[] script =
        [
            // In place over the template's data, then allocating into the existing table.
            SessionOp.Write(20 * 1024 + random.Next(3000), Bytes(random, 3 * ClusterSize + random.Next(2000))),
            // Allocating across the end of table 0 into a new table 1 (the repair removed the old one).
            SessionOp.Write(S - 5 * C + random.Next(3000), Bytes(random, 9 * ClusterSize + random.Next(2000))),
            SessionOp.Flush(),
            // Whole unallocated clusters: zero clusters with a backing file, nothing to do without.
            SessionOp.WriteZeroes(S + 16 * C, 8 * ClusterSize),
            // Unaligned, over allocated data: zeros written in place.
            SessionOp.WriteZeroes(4 * C + 1 + random.Next(ClusterSize - 2), 3 * ClusterSize),
            // Allocating over zero clusters.
            SessionOp.Write(S + 17 * C + random.Next(3000), Bytes(random, 2 * ClusterSize)),
            // A new table 2 and a long run of clusters in one allocation.
            SessionOp.Write(2 * S + 7 * C + random.Next(3000), Bytes(random, 20 * ClusterSize + random.Next(3000))),
            // In place in the template's data at 1 MiB.
            SessionOp.Write((1 << 20) + random.Next(3000), Bytes(random, 1 + random.Next(2000))),
            SessionOp.Flush(),
            // Small, in place, overlapping the first write.
            SessionOp.Write(21 * 1024 + random.Next(2000), Bytes(random, 600)),
        ];
        // After a fault: an in-place write into cluster 0, which the template allocated and no request frees.
        var probe = SessionOp.Write(3000, Bytes(random, 700));
        return new FaultSession(dir, template, initial, script, probe);
    }

    /// <summary>
    /// Runs the session once with <paramref name="kind"/> injected at write or flush number <paramref name="at"/> (or
    /// with nothing injected) and asserts: the fault fired; its caller saw exactly that error, once (after a failed flush
    /// every later flush, and the close, report the same failure again and nothing else fails); an open that failed
    /// leaves a file the next open repairs to the same contents; otherwise the same open image keeps working, every
    /// acknowledged request reads back (bytes under a failed request hold old or new values), the handle is released
    /// by the close even when it fails, qemu-img check finds no corruption, and a reopen reads the same.
    /// </summary>
    public async Task<FaultyFileAccessor> RunAsync(FaultKind kind, int at, bool useAsync)
    {
        string context = $"{kind} #{at} ({(useAsync ? "async" : "sync")})";
        File.Copy(_template, _path, overwrite: true);
        var faulty = new FaultyFileAccessor(HandleFileAccessor.Open(_path, readOnly: false), kind, at) { Phase = SessionPhase.Open };
        try
        {
            return await RunCoreAsync(faulty, kind, useAsync, context);
        }
        catch (Exception e) when (e is not Xunit.Sdk.IAssertionException)
        {
            // An exception outside a request (a read of the whole disk, a reopen) is a second failure the fault caused.
            Assert.Fail($"{context}, fault {faulty.FiredAt ?? "not fired"} in {faulty.FiredIn}: {e}");
            throw;
        }
    }

    private async Task<FaultyFileAccessor> RunCoreAsync(FaultyFileAccessor faulty, FaultKind kind, bool useAsync, string context)
    {
        var failures = new List<(string Request, IOException Error)>();
        var model = new DiskModel(_initial.ToArray());

        QedImage? image = null;
        try
        {
            image = await Img.OpenOver(faulty, useAsync, s_options);
        }
        catch (IOException e) when (kind != FaultKind.None)
        {
            failures.Add(("open", e));
        }
        if (image is null)
        {
            // The caller owns the file until the open succeeds.
            faulty.Dispose();
            AssertReported(kind, faulty, failures, context);
            Assert.Equal(SessionPhase.Open, faulty.FiredIn);
            // A failed open loses nothing: the next open completes the repair.
            await AssertReopenReadsAsync(model, useAsync, $"{context}: reopen after the failed open");
            AssertQemuFindsNoCorruption($"{context}: after the failed open and a reopen");
            return faulty;
        }

        faulty.Phase = SessionPhase.Work;
        for (int i = 0; i < _script.Length; i++)
        {
            await RunRequestAsync(image, _script[i], $"request {i} ({_script[i]})", model, failures, useAsync);
        }
        if (faulty.FiredIn == SessionPhase.Work)
        {
            // The same open image keeps working after the failure.
            int before = failures.Count;
            await RunRequestAsync(image, _probe, "the probe after the fault", model, failures, useAsync);
            Assert.True(failures.Count == before, $"{context}: an in-place write after the fault failed: {(failures.Count > before ? failures[^1].Error : null)}");
            if (kind == FaultKind.FailFlush)
            {
                // A failed flush may have lost cached writes: no later flush may claim they are durable.
                var again = await Record.ExceptionAsync(() => Img.Flush(image, useAsync));
                Assert.True(again is QedException && again.InnerException == faulty.Injected, $"{context}: a flush after the failed one ({faulty.FiredAt}) did not report it again: {again?.ToString() ?? "it succeeded"}");
            }
        }
        byte[] seen = await Img.Read(image, 0, (int)Size, useAsync);
        AssertReads(model, seen, $"{context}: the open image after the run ({faulty.FiredAt})");

        faulty.Phase = SessionPhase.Close;
        try
        {
            await Img.Close(image, useAsync);
        }
        catch (IOException e)
        {
            failures.Add(("close", e));
        }
        Assert.True(faulty.IsDisposed, $"{context}: the close did not release the file");

        if (kind == FaultKind.None)
        {
            Assert.True(failures.Count == 0, $"unfaulted run: {string.Join("; ", failures)}");
        }
        else
        {
            AssertReported(kind, faulty, failures, context);
            if (kind == FaultKind.FailFlush)
            {
                Assert.False(faulty.ClearedNeedCheckAfterFailedFlush, $"{context}: the need-check bit was cleared after a failed flush");
                Assert.True(faulty.FiredIn == SessionPhase.Close || failures[^1].Request == "close", $"{context}: the close after a failed flush reported success");
            }
        }

        AssertQemuFindsNoCorruption($"{context} ({faulty.FiredAt})");
        await AssertReopenReadsAsync(model, useAsync, $"{context} ({faulty.FiredAt}): after reopening");
        return faulty;
    }

    private static async Task RunRequestAsync(QedImage image, SessionOp op, string request, DiskModel model, List<(string, IOException)> failures, bool useAsync)
    {
        try
        {
            switch (op.Kind)
            {
                case SessionOpKind.Write:
                    await Img.Write(image, op.Offset, op.Data, useAsync);
                    break;
                case SessionOpKind.WriteZeroes:
                    await Img.WriteZeroes(image, op.Offset, op.Data.Length, useAsync);
                    break;
                default:
                    await Img.Flush(image, useAsync);
                    break;
            }
            model.Apply(op.Offset, op.Data);
        }
        catch (IOException e)
        {
            failures.Add((request, e));
            model.ApplyFailed(op.Offset, op.Data);
        }
    }

    /// <summary>The fault fired, and the first error any caller saw is it (or names it as its cause); only a failed flush is reported again later, always as the same failure.</summary>
    private static void AssertReported(FaultKind kind, FaultyFileAccessor faulty, List<(string Request, IOException Error)> failures, string context)
    {
        var injected = faulty.Injected;
        Assert.True(injected is not null, $"{context}: the fault never fired");
        Assert.True(failures.Count > 0, $"{context}: the fault fired ({faulty.FiredAt}, in {faulty.FiredIn}) but no caller saw an error");
        var (request, first) = failures[0];
        Assert.True(first == injected || first.InnerException == injected, $"{context}: {request} failed with something other than the injected fault: {first}");
        if (kind != FaultKind.FailFlush)
        {
            Assert.True(failures.Count == 1, $"{context}: {failures.Count} requests failed: {string.Join("; ", failures.Select(f => $"{f.Request}: {f.Error.Message}"))}");
            return;
        }
        foreach (var (later, error) in failures.Skip(1))
        {
            Assert.True(error is QedException && error.InnerException == injected, $"{context}: {later} failed with something other than the earlier flush failure: {error}");
        }
    }

    private async Task AssertReopenReadsAsync(DiskModel model, bool useAsync, string context)
    {
        await using var image = await Img.Open(_path, useAsync);
        AssertReads(model, await Img.Read(image, 0, (int)Size, useAsync), context);
    }

    private void AssertQemuFindsNoCorruption(string context)
    {
        var check = Tools.QemuImgRaw(_dir.Path, "check", "-f", "qed", _path);
        Assert.True(check.ExitCode is 0 or 3, $"{context}: qemu-img check: {check}");
    }

    private static void AssertReads(DiskModel model, byte[] actual, string context)
    {
        string? mismatch = model.FirstMismatch(actual);
        Assert.True(mismatch is null, $"{context}: {mismatch}");
    }

    private static byte[] Bytes(Random random, int length)
    {
        byte[] bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}
