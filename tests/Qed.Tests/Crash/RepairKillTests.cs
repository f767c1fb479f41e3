using System.Diagnostics;
using System.Globalization;
using Qed.Check;
using Qed.CrashWriter;
using Qed.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Crash;

/// <summary>
/// Kills the real <c>qed</c> program with SIGKILL while it repairs a dirty image: the check-and-repair a writable open
/// runs when the need-check bit is set (<c>qed io -c 'write ...'</c>), and <c>qed check -r all</c>. The image
/// (<see cref="DirtyImage"/>) has an invalid entry in each of many L2 tables, so the file shows how far the repair got;
/// the kill lands right after a chosen table was rewritten, after the L1 table was, after the leaks were cut off, or at
/// a random time. Then: the image opens, qemu-img check finds exactly the planted corruptions the repair had not yet
/// fixed (none new), every data cluster reads back, and a repair leaves the same image a complete run leaves, clean
/// for qed and qemu-img.
/// </summary>
[Collection(KillCollection.Name)]
public class RepairKillTests
{
    /// <summary>Kills that must land during the repair (the file shows some of its writes and the need-check bit still set).</summary>
    private const int WantedInRepair = 8;

    /// <summary>Runs allowed to get them: a kill can also land before the repair's first write or after its last, or qed can finish first.</summary>
    private const int MaxRuns = 30;
    private const int KilledExitCode = 128 + 9;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    /// <summary>Cluster size, table size, number of L2 tables. The 4 KiB image stays below 16 MiB, where qemu-img counts leaks exactly (QED-FORMAT.md §8.4).</summary>
    public static TheoryData<int, int, int> Geometries => new()
    {
        { 65536, 16, 40 },
        { 4096, 16, 200 },
    };

    private enum Trigger
    {
        /// <summary>Right after a chosen L2 table was rewritten.</summary>
        Table,

        /// <summary>Right after the L1 table was rewritten.</summary>
        L1,

        /// <summary>Right after the leaked clusters were cut off.</summary>
        Truncation,

        /// <summary>At a random time within a complete run's duration.</summary>
        Time,
    }

    [Theory]
    [MemberData(nameof(Geometries))]
    public void Kills_during_the_repair_of_a_writable_open(int clusterSize, int tableSize, int tables) =>
        Run(io: true, clusterSize, tableSize, tables);

    [Theory]
    [MemberData(nameof(Geometries))]
    public void Kills_during_check_r_all(int clusterSize, int tableSize, int tables) =>
        Run(io: false, clusterSize, tableSize, tables);

    private static void Run(bool io, int clusterSize, int tableSize, int tables)
    {
        string name = $"RepairKillTests {(io ? "qed io" : "qed check -r all")}({clusterSize},{tableSize},{tables} tables)";
        int seed = TestSeed.For(name);
        var random = new Random(seed);
        using var dir = new TempDirectory();
        string template = dir.File("template.qed");
        var dirty = DirtyImage.Build(template, clusterSize, tableSize, tables, random.Next());
        var planted = QemuOracle.Check(dir.Path, template);
        Assert.True(planted.ExitCode == 2 && planted.Corruptions == dirty.PlantedCorruptions && planted.CheckErrors == 0,
            $"{name}: qemu-img check should see the {dirty.PlantedCorruptions} planted corruptions: {planted}");

        // qed io writes in place into a data cluster once the repair is done: no allocation, so the need-check bit stays clear.
        var written = dirty.Data[0];
        string[] Arguments(string image) => io
            ? ["io", "-f", "qed", "-c", string.Create(CultureInfo.InvariantCulture, $"write -P 0xa5 {written.Guest} 4096"), "-c", "flush", image]
            : ["check", "-r", "all", image];

        // A complete run: what every killed run must come to once repaired.
        string reference = dir.File("reference.qed");
        File.Copy(template, reference);
        var clock = Stopwatch.StartNew();
        var complete = QedProcess.Run(dir.Path, s_timeout, Arguments(reference));
        var fullRun = clock.Elapsed;
        Assert.True(complete.ExitCode == 0, $"{name}: the complete run failed: {complete}");
        var done = dirty.StateOf(reference);
        Assert.True(done == new RepairState(false, tables, true, true, 0), $"{name}: the complete run left {done}");
        Assert.Equal(dirty.RepairedLength, new FileInfo(reference).Length);
        VerifyRepaired(name + " complete run", dir.Path, reference, dirty, ioWrite: io);
        byte[] referenceBytes = File.ReadAllBytes(reference);
        byte[] templateBytes = File.ReadAllBytes(template);

        int during = 0, before = 0, after = 0, finished = 0, afterL1 = 0, afterTruncation = 0;
        var points = new HashSet<RepairState>();
        int runs = 0;
        for (int round = 0; during < WantedInRepair && round < MaxRuns; round++)
        {
            runs++;
            string context = $"{name} seed {seed} round {round}";
            string victim = dir.File("victim.qed");
            File.Copy(template, victim, overwrite: true);
            int roll = random.Next(100);
            var trigger = roll < 60 ? Trigger.Table : roll < 70 ? Trigger.L1 : roll < 80 ? Trigger.Truncation : Trigger.Time;
            int table = random.Next(tables);
            var delay = fullRun * random.NextDouble();

            bool killed = RunAndKill(dir.Path, Arguments(victim), victim, dirty, trigger, table, delay, context);
            var state = dirty.StateOf(victim);
            if (!killed)
            {
                finished++;
            }
            else if (state.InRepair)
            {
                during++;
                points.Add(state);
                afterL1 += state.L1Fixed ? 1 : 0;
                afterTruncation += state.Truncated ? 1 : 0;
            }
            else if (state.Untouched)
            {
                before++;
            }
            else
            {
                after++;
            }

            // The killed repair added no corruption: QEMU counts exactly the planted entries it had not yet zeroed.
            Assert.True(state.NeedCheckSet || state.Remaining == 0, $"{context}: the need-check bit was cleared with {state.Remaining} invalid entries left");
            var qemu = QemuOracle.Check(dir.Path, victim);
            Assert.True(qemu.ExitCode is 0 or 2 or 3 && qemu.CheckErrors == 0 && qemu.Corruptions == state.Remaining,
                $"{context}: after the kill ({state}) qemu-img check should count {state.Remaining} corruptions: {qemu}");

            // The image opens read-only as it is, and every data cluster reads back (the io write's range may hold either bytes).
            // qed io's write is acknowledged when qed exits 0; a kill may have come before or after it.
            bool? ioWrite = !io ? false : killed ? null : true;
            using (var readOnly = QedImage.Open(victim, new ImageOpenOptions { ReadOnly = true }))
            {
                VerifyData(context, readOnly, dirty, ioWrite);
            }
            // A writable open finishes the repair; then the file is what the complete run left.
            using (QedImage.Open(victim))
            {
            }
            AssertSameAsReference(context, File.ReadAllBytes(victim), referenceBytes, templateBytes, ioWrite is null ? written.Host : -1);
            VerifyRepaired(context, dir.Path, victim, dirty, ioWrite);
        }

        TestSeed.Report($"{name}: {runs} runs: {during} killed during the repair ({points.Count} distinct states, " +
            $"{points.Select(p => p.TablesFixed).DefaultIfEmpty(-1).Min()}..{points.Select(p => p.TablesFixed).DefaultIfEmpty(-1).Max()} of {tables} tables rewritten; {afterL1} after the L1 table, {afterTruncation} after cutting the leaks), " +
            $"{before} before its first write, {after} after it, {finished} finished first; a complete run takes {fullRun.TotalMilliseconds:F0} ms");
        Assert.True(during >= WantedInRepair, $"{name}: only {during} of {runs} kills landed during the repair");
    }

    /// <summary>Starts qed, waits for the trigger, sends SIGKILL; returns true when the kill, not qed, ended the process.</summary>
    private static bool RunAndKill(string directory, string[] arguments, string image, DirtyImage dirty, Trigger trigger, int table, TimeSpan delay, string context)
    {
        using var file = File.OpenHandle(image, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var process = Process.Start(QedProcess.StartInfo(directory, arguments))!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        // Poll the file (a few microseconds per look) so the kill lands right after the chosen write.
        while (!process.HasExited && !Fired(file, dirty, trigger, table, delay, clock.Elapsed))
        {
            if (clock.Elapsed > s_timeout)
            {
                process.Kill();
                process.WaitForExit();
                Assert.Fail($"{context}: qed neither finished nor reached the trigger {trigger} in {s_timeout}");
            }
            Thread.SpinWait(20);
        }
        process.Kill();
        process.WaitForExit();
        if (process.ExitCode == KilledExitCode)
        {
            return true;
        }
        Assert.True(process.ExitCode == 0, $"{context}: qed failed by itself: exit {process.ExitCode}\n{stdout.Result}\n{stderr.Result}");
        return false;
    }

    private static bool Fired(Microsoft.Win32.SafeHandles.SafeFileHandle file, DirtyImage dirty, Trigger trigger, int table, TimeSpan delay, TimeSpan elapsed) => trigger switch
    {
        Trigger.Table => DirtyImage.ReadU64(file, dirty.TableMarkers[table]) == 0,
        Trigger.L1 => DirtyImage.ReadU64(file, dirty.L1Marker) == 0,
        Trigger.Truncation => RandomAccess.GetLength(file) < dirty.Length,
        _ => elapsed >= delay,
    };

    /// <summary>
    /// Every data cluster holds its bytes; with <paramref name="ioWrite"/> true the first one holds qed io's 0xa5 in its
    /// first 4 KiB, with null either (a kill may have come before or after that write).
    /// </summary>
    private static void VerifyData(string context, QedImage image, DirtyImage dirty, bool? ioWrite)
    {
        byte[] actual = new byte[dirty.ClusterSize];
        byte[] expected = new byte[dirty.ClusterSize];
        for (int i = 0; i < dirty.Data.Count; i++)
        {
            var (guest, _, fill) = dirty.Data[i];
            image.Read(actual, guest);
            new CrashOp(CrashOpKind.Write, guest, dirty.ClusterSize, fill).FillBuffer(expected);
            for (int b = 0; b < actual.Length; b++)
            {
                bool inWrite = i == 0 && b < 4096 && ioWrite != false;
                bool ok = !inWrite ? actual[b] == expected[b]
                    : ioWrite == true ? actual[b] == 0xa5
                    : actual[b] == expected[b] || actual[b] == 0xa5;
                if (!ok)
                {
                    Assert.Fail($"{context}: guest byte {guest + b} reads 0x{actual[b]:x2}, expected 0x{expected[b]:x2}");
                }
            }
        }
    }

    /// <summary>The image after a finished repair: data intact, repaired clusters zero, and clean for qed and for qemu-img.</summary>
    private static void VerifyRepaired(string context, string directory, string image, DirtyImage dirty, bool? ioWrite)
    {
        using (var repaired = QedImage.Open(image, new ImageOpenOptions { SkipCheckOnOpen = true }))
        {
            Assert.False(repaired.Header.NeedsCheck, $"{context}: the need-check bit is still set after the repair");
            VerifyData(context, repaired, dirty, ioWrite);
            byte[] cluster = new byte[dirty.ClusterSize];
            foreach (long guest in dirty.InvalidGuests)
            {
                repaired.Read(cluster, guest);
                Assert.True(cluster.AsSpan().IndexOfAnyExcept((byte)0) < 0, $"{context}: the cluster at guest {guest}, whose invalid entry was zeroed, does not read as zeros");
            }
            var check = repaired.Check(RepairMode.All);
            Assert.True(check.Corruptions == 0 && check.CorruptionsFixed == 0 && check.Leaks == 0 && check.LeaksFixed == 0 && check.CheckErrors == 0,
                $"{context}: a second repair still found work: {check}");
        }
        var qemu = QemuOracle.Check(directory, image);
        Assert.True(qemu.ExitCode == 0, $"{context}: qemu-img check after the repair: {qemu}");
    }

    /// <summary>The repaired file equals the complete run's, except that qed io's 4 KiB write may be missing (killed before it).</summary>
    private static void AssertSameAsReference(string context, byte[] actual, byte[] reference, byte[] template, long writeHost)
    {
        Assert.True(actual.Length == reference.Length, $"{context}: the repaired file is {actual.Length} bytes, the complete run's {reference.Length}");
        int first = actual.AsSpan().CommonPrefixLength(reference);
        while (first < actual.Length)
        {
            bool unwritten = first >= writeHost && first < writeHost + 4096 && writeHost >= 0 && actual[first] == template[first];
            Assert.True(unwritten, $"{context}: byte {first} of the repaired file is 0x{actual[first]:x2}, the complete run left 0x{reference[first]:x2}");
            first++;
            first += actual.AsSpan(first).CommonPrefixLength(reference.AsSpan(first));
        }
    }
}
