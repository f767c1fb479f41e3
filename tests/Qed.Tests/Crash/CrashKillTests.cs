using System.Diagnostics;
using System.Globalization;
using Qed.Check;
using Qed.CrashWriter;
using Qed.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Crash;

/// <summary>
/// Kills a writer process (<c>Qed.CrashWriter</c>, one thread or six on one open image) with SIGKILL at random moments
/// and checks that the image survives: it opens, neither qed nor qemu-img finds a corruption, every write
/// acknowledged by a completed flush of its thread reads back intact, and a repair leaves it clean.
/// </summary>
[Collection(KillCollection.Name)]
public class CrashKillTests
{
    private const long DiskSize = 24L << 20;

    public static TheoryData<int, int, bool> Geometries => new()
    {
        { 4096, 2, false },
        { 4096, 2, true },
        { 65536, 4, false },
        { 65536, 4, true },
        { 65536, 16, false },
    };

    /// <summary>Geometries for six threads, with the width of the stripes each thread owns.</summary>
    /// <remarks>12 KiB stripes inside 64 KiB clusters make threads allocate and copy-on-write the same clusters at once; wider stripes give whole-cluster allocations side by side.</remarks>
    public static TheoryData<int, int, bool, int> ThreadedGeometries => new()
    {
        { 4096, 2, false, 12288 },
        { 4096, 2, true, 12288 },
        { 65536, 4, true, 12288 },
        { 65536, 4, false, 12288 },
        { 65536, 16, true, 196608 },
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void Survives_kills_at_random_moments(int clusterSize, int tableSize, bool withBacking) =>
        RunRounds($"writer({clusterSize},{tableSize},{(withBacking ? "backing" : "no backing")})", rounds: 10, clusterSize, tableSize, withBacking, threads: 1, stripe: 0);

    [Theory]
    [MemberData(nameof(ThreadedGeometries))]
    public void Survives_kills_of_six_writer_threads(int clusterSize, int tableSize, bool withBacking, int stripe) =>
        RunRounds($"six writers({clusterSize},{tableSize},{(withBacking ? "backing" : "no backing")},stripe {stripe})", rounds: 6, clusterSize, tableSize, withBacking, threads: 6, stripe);

    private static void RunRounds(string name, int rounds, int clusterSize, int tableSize, bool withBacking, int threads, int stripe)
    {
        int seed = TestSeed.For($"CrashKillTests {name}");
        var random = new Random(seed);
        int kills = 0;
        long started = 0, acknowledged = 0, threadRuns = 0, leaksLeft = 0;
        for (int round = 0; round < rounds; round++)
        {
            int roundSeed = random.Next();
            // Threads start a few steps each before the first kill can land; one thread gets the existing range.
            int killAfterSteps = threads == 1 ? random.Next(5, 1500) : random.Next(6 * 5, 6 * 400);
            var (progress, leaks) = RunOnce($"{name} seed {seed} round {round}", roundSeed, clusterSize, tableSize, withBacking, threads, stripe, killAfterSteps);
            kills++;
            started += progress.LastStarted.Sum(last => last + 1L);
            acknowledged += progress.LastFlushed.Count(last => last >= 0);
            threadRuns += threads;
            leaksLeft += leaks;
        }
        TestSeed.Report($"CrashKillTests {name}: {kills} kills, {started} steps started before them; in {acknowledged} of {threadRuns} thread runs a flush had been acknowledged (its writes checked); {leaksLeft} leaked clusters in the middle of files after the repairs");
        Assert.Equal(rounds, kills);
    }

    private static (WriterProgress Progress, long LeaksLeft) RunOnce(string context, int seed, int clusterSize, int tableSize, bool withBacking, int threads, int stripe, int killAfterSteps)
    {
        using var dir = new TempDirectory();
        string image = dir.File("crash.qed");
        byte[] model = new byte[DiskSize];
        if (withBacking)
        {
            // Shorter than the image and not sector aligned, so copy-up meets the backing file's end.
            byte[] backing = new byte[(int)(DiskSize * 2 / 3) + 123];
            new Random(seed).NextBytes(backing);
            File.WriteAllBytes(dir.File("base.raw"), backing);
            backing.CopyTo(model, 0);
        }
        QedImage.Create(image, new QedCreateOptions
        {
            Size = DiskSize,
            ClusterSize = clusterSize,
            TableSize = tableSize,
            BackingFile = withBacking ? "base.raw" : null,
            BackingFormat = withBacking ? "raw" : null,
        });

        var progress = RunWriterAndKill(image, seed, threads, stripe, killAfterSteps);
        Assert.True(progress.Killed, $"{context}: the writer stopped by itself before the kill: {progress.Error}");
        if (threads > 1)
        {
            // Evidence that the kill hit concurrent work: every thread had started.
            Assert.True(progress.LastStarted.All(last => last >= 0), $"{context}: not every thread had started: {string.Join(',', progress.LastStarted)}");
        }

        var qemu = QemuOracle.Check(dir.Path, image);
        Assert.True(qemu.NoCorruption, $"{context}: qemu-img check after the kill: {qemu}");

        bool[] unknown = new bool[DiskSize];
        long inFlightClusters = 0;
        for (int thread = 0; thread < threads; thread++)
        {
            var ops = (threads == 1
                ? CrashPlan.Generate(seed, DiskSize, clusterSize, progress.LastStarted[thread] + 1)
                : CrashPlan.GenerateStriped(seed, thread, threads, stripe, DiskSize, progress.LastStarted[thread] + 1)).ToArray();
            ApplyToModel(ops, progress.LastFlushed[thread], model, unknown);
            if (ops.Length > 0 && ops[^1].Kind != CrashOpKind.Flush)
            {
                // The step a thread was in when killed may have reserved its clusters and a new L2 table, and never referenced them.
                var last = ops[^1];
                inFlightClusters += (last.Offset + last.Length - 1) / clusterSize - last.Offset / clusterSize + 1 + tableSize;
            }
        }

        using (var readOnly = QedImage.Open(image, new ImageOpenOptions { ReadOnly = true }))
        {
            var check = readOnly.Check();
            Assert.True(check.Corruptions == 0 && check.CheckErrors == 0, $"{context}: qed check after the kill: {check}");
            byte[] actual = new byte[DiskSize];
            readOnly.Read(actual, 0);
            for (long i = 0; i < DiskSize; i++)
            {
                if (!unknown[i] && actual[i] != model[i])
                {
                    Assert.Fail($"{context}: byte {i} reads 0x{actual[i]:x2}, expected 0x{model[i]:x2} (last flushes acknowledged {string.Join(',', progress.LastFlushed)}, last steps started {string.Join(',', progress.LastStarted)})");
                }
            }
        }

        long leaksLeft;
        using (var writable = QedImage.Open(image, new ImageOpenOptions { SkipCheckOnOpen = true }))
        {
            var repaired = writable.Check(RepairMode.Leaks);
            // One writer allocates at the end of the file, so whatever a kill leaks is at the end and cut off. Threads
            // allocate concurrently: a step killed after reserving clusters, behind a later reservation that completed,
            // leaks clusters in the middle of the file, which QED cannot reclaim (harmless: they are never reused).
            long leaksAllowed = threads == 1 ? 0 : inFlightClusters;
            Assert.True(repaired.Corruptions == 0 && repaired.CheckErrors == 0 && repaired.Leaks <= leaksAllowed,
                $"{context}: after qed check -r leaks, with at most {leaksAllowed} clusters of steps in flight at the kill: {repaired}");
            leaksLeft = repaired.Leaks;
        }
        var after = QemuOracle.Check(dir.Path, image);
        Assert.True(threads == 1 ? after.ExitCode == 0 : after.NoCorruption, $"{context}: qemu-img check after the leak repair: {after}");
        return (progress, leaksLeft);
    }

    /// <summary>Applies one thread's steps to the model: up to its last acknowledged flush they must have landed; later ones may be absent, present or half done.</summary>
    private static void ApplyToModel(IEnumerable<CrashOp> ops, int lastFlushed, byte[] model, bool[] unknown)
    {
        int i = 0;
        foreach (var op in ops)
        {
            if (op.Kind != CrashOpKind.Flush)
            {
                if (i > lastFlushed)
                {
                    Array.Fill(unknown, true, (int)op.Offset, op.Length);
                }
                else if (op.Kind == CrashOpKind.WriteZeroes)
                {
                    Array.Clear(model, (int)op.Offset, op.Length);
                }
                else
                {
                    op.FillBuffer(model.AsSpan((int)op.Offset, op.Length));
                }
            }
            i++;
        }
    }

    /// <summary>Starts the writer, lets its threads run <paramref name="killAfterSteps"/> steps in all, kills it, and returns each thread's last acknowledged flush and last step started.</summary>
    private static WriterProgress RunWriterAndKill(string image, int seed, int threads, int stripe, int killAfterSteps)
    {
        string writer = Path.Combine(AppContext.BaseDirectory, "Qed.CrashWriter.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // A killed runtime cannot remove its diagnostic pipes from /tmp; the writer needs none.
        info.Environment["DOTNET_EnableDiagnostics"] = "0";
        info.ArgumentList.Add(writer);
        info.ArgumentList.Add(image);
        info.ArgumentList.Add(seed.ToString(CultureInfo.InvariantCulture));
        info.ArgumentList.Add("1000000");
        if (threads > 1)
        {
            info.ArgumentList.Add(threads.ToString(CultureInfo.InvariantCulture));
            info.ArgumentList.Add(stripe.ToString(CultureInfo.InvariantCulture));
        }
        using var process = Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var progress = new WriterProgress(threads);
        int stepsStarted = 0;
        bool killed = false;
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            // With several threads, also wait until each has started: on two busy cores one can lag far behind the others.
            if (progress.Record(line) == 'S' && ++stepsStarted >= killAfterSteps && progress.LastStarted.All(last => last >= 0))
            {
                process.Kill();
                killed = true;
                break;
            }
        }
        // Lines already written before the kill landed are still readable: they only tighten the bounds.
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            progress.Record(line);
        }
        process.WaitForExit();
        progress.Killed = killed;
        progress.Error = killed ? "" : $"exit {process.ExitCode}: {stderr.Result}";
        return progress;
    }

    /// <summary>What the writer reported before it died: per thread, the last flush acknowledged and the last step started (-1: none).</summary>
    private sealed class WriterProgress
    {
        public WriterProgress(int threads)
        {
            LastFlushed = Enumerable.Repeat(-1, threads).ToArray();
            LastStarted = Enumerable.Repeat(-1, threads).ToArray();
        }

        public int[] LastFlushed { get; }

        public int[] LastStarted { get; }

        public bool Killed { get; set; }

        public string Error { get; set; } = "";

        /// <summary>Records one line (<c>S t i</c> or <c>F t i</c>) and returns its kind, or '\0' for any other line.</summary>
        public char Record(string line)
        {
            string[] parts = line.Split(' ');
            if (parts.Length != 3 || parts[0] is not ("S" or "F"))
            {
                return '\0';
            }
            int thread = int.Parse(parts[1], CultureInfo.InvariantCulture);
            int step = int.Parse(parts[2], CultureInfo.InvariantCulture);
            (parts[0] == "S" ? LastStarted : LastFlushed)[thread] = step;
            return parts[0][0];
        }
    }
}
