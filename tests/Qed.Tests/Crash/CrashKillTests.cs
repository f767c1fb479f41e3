using System.Diagnostics;
using Qed.Check;
using Qed.CrashWriter;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash;

/// <summary>
/// Kills a writer process with SIGKILL at random moments and checks that the image survives: it opens, neither
/// qed nor qemu-img finds a corruption, a leak repair leaves it clean, and every write acknowledged by a completed
/// flush reads back intact.
/// </summary>
public class CrashKillTests
{
    public static TheoryData<int, int, bool> Geometries => new()
    {
        { 4096, 2, false },
        { 4096, 2, true },
        { 65536, 4, false },
        { 65536, 4, true },
        { 65536, 16, false },
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void Survives_kills_at_random_moments(int clusterSize, int tableSize, bool withBacking)
    {
        const int Kills = 10;
        for (int round = 0; round < Kills; round++)
        {
            int seed = HashCode.Combine(clusterSize, tableSize, withBacking, round) & 0x7fffffff;
            RunOnce(seed, clusterSize, tableSize, withBacking);
        }
    }

    private static void RunOnce(int seed, int clusterSize, int tableSize, bool withBacking)
    {
        using var dir = new TempDirectory();
        string image = dir.File("crash.qed");
        long size = 24L << 20;
        byte[] model = new byte[size];
        if (withBacking)
        {
            // Shorter than the image and not sector aligned, so copy-up meets the backing file's end.
            byte[] backing = new byte[(int)(size * 2 / 3) + 123];
            new Random(seed).NextBytes(backing);
            File.WriteAllBytes(dir.File("base.raw"), backing);
            backing.CopyTo(model, 0);
        }
        QedImage.Create(image, new QedCreateOptions
        {
            Size = size,
            ClusterSize = clusterSize,
            TableSize = tableSize,
            BackingFile = withBacking ? "base.raw" : null,
            BackingFormat = withBacking ? "raw" : null,
        });

        var random = new Random(seed);
        int killAfterSteps = random.Next(5, 1500);
        var (lastFlushed, lastStarted) = RunWriterAndKill(image, seed, killAfterSteps);

        var qemu = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", image);
        Assert.True(qemu.ExitCode is 0 or 3, $"seed {seed}: qemu-img check after the kill: {qemu}");

        var ops = CrashPlan.Generate(seed, size, clusterSize, lastStarted + 1).ToArray();
        bool[] unknown = new bool[size];
        byte[] buffer = new byte[4 << 20];
        for (int i = 0; i < ops.Length; i++)
        {
            var op = ops[i];
            if (op.Kind == CrashOpKind.Flush)
            {
                continue;
            }
            if (i > lastFlushed)
            {
                // Started after the last acknowledged flush: may be absent, present or half done.
                Array.Fill(unknown, true, (int)op.Offset, op.Length);
                continue;
            }
            if (op.Kind == CrashOpKind.WriteZeroes)
            {
                Array.Clear(model, (int)op.Offset, op.Length);
            }
            else
            {
                op.FillBuffer(model.AsSpan((int)op.Offset, op.Length));
            }
        }

        using (var readOnly = QedImage.Open(image, new QedOpenOptions { ReadOnly = true }))
        {
            var check = readOnly.Check();
            Assert.True(check.Corruptions == 0 && check.CheckErrors == 0, $"seed {seed}: qed check after the kill: {check}");
            byte[] actual = new byte[size];
            readOnly.Read(actual, 0);
            for (long i = 0; i < size; i++)
            {
                if (!unknown[i] && actual[i] != model[i])
                {
                    Assert.Fail($"seed {seed}: byte {i} reads 0x{actual[i]:x2}, expected 0x{model[i]:x2} (last flush acknowledged at step {lastFlushed}, last step started {lastStarted})");
                }
            }
        }

        using (var writable = QedImage.Open(image, new QedOpenOptions { SkipCheckOnOpen = true }))
        {
            var repaired = writable.Check(RepairMode.Leaks);
            Assert.True(repaired.Corruptions == 0 && repaired.Leaks == 0, $"seed {seed}: after qed check -r leaks: {repaired}");
        }
        var after = Tools.QemuImgRaw(dir.Path, "check", "-f", "qed", image);
        Assert.True(after.ExitCode == 0, $"seed {seed}: qemu-img check after the leak repair: {after}");
    }

    /// <summary>Starts the writer, lets it run <paramref name="killAfterSteps"/> steps, kills it, and returns the last acknowledged flush and the last step started.</summary>
    private static (int LastFlushed, int LastStarted) RunWriterAndKill(string image, int seed, int killAfterSteps)
    {
        string writer = Path.Combine(AppContext.BaseDirectory, "Qed.CrashWriter.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(writer);
        info.ArgumentList.Add(image);
        info.ArgumentList.Add(seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
        info.ArgumentList.Add("1000000");
        using var process = Process.Start(info)!;
        int lastFlushed = -1, lastStarted = -1;
        bool killed = false;
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            if (line.StartsWith("S ", StringComparison.Ordinal))
            {
                lastStarted = int.Parse(line.AsSpan(2), System.Globalization.CultureInfo.InvariantCulture);
                if (lastStarted >= killAfterSteps)
                {
                    process.Kill();
                    killed = true;
                    break;
                }
            }
            else if (line.StartsWith("F ", StringComparison.Ordinal))
            {
                lastFlushed = int.Parse(line.AsSpan(2), System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        // Lines already written before the kill landed are still readable: they only tighten the bounds.
        while ((line = process.StandardOutput.ReadLine()) is not null)
        {
            if (line.StartsWith("S ", StringComparison.Ordinal))
            {
                lastStarted = int.Parse(line.AsSpan(2), System.Globalization.CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("F ", StringComparison.Ordinal))
            {
                lastFlushed = int.Parse(line.AsSpan(2), System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        process.WaitForExit();
        Assert.True(killed, $"the writer stopped by itself (exit {process.ExitCode}): {process.StandardError.ReadToEnd()}");
        return (lastFlushed, lastStarted);
    }
}
