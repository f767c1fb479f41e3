using System.Globalization;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>What one CLI fuzz case did, for the run's counts.</summary>
internal sealed record CliCaseOutcome(string Layout, bool Converted, RelationKind AsWritten, RelationKind AfterRepair, RelationKind AfterWrites, CheckReport Repair);

/// <summary>
/// Runs the real <c>qed</c> program (<see cref="QedProcess"/>) on one mutant on disk, in one worker's directory, and
/// compares our check with <c>qemu-img check</c>. A case is one of three layouts: a mutated image alone; a QED overlay
/// (sometimes mutated too) over a mutated QED base; a QED overlay over a raw base of random length.
/// </summary>
/// <remarks>
/// <para>The commands, in order, on the mutant as written: <c>info</c> (format probed, backing chain opened),
/// <c>check</c> and <c>qemu-img check</c>, <c>convert</c> (to raw or QED; skipped above <see cref="ConvertLimit"/> of
/// virtual size), <c>check -r all</c> and then <c>qemu-img check -r all</c>; then, on a fresh copy of the mutant,
/// <c>io</c> (read, write, write zeroes, flush; the writable open repairs a need-check image first), <c>check</c> and
/// <c>qemu-img check</c>.</para>
/// <para>Every qed process must end within <see cref="ProcessLimit"/> with its command's statuses (check: 0 clean, 1
/// could not check, 2 corruptions, 3 leaks only; the others 0 or 1), at most one line on stderr, and no unhandled
/// exception. Each pair of checks must satisfy <see cref="QemuCheckRelation"/>. A failed convert leaves no output file.
/// The backing files the images may name are never written, and nothing but the images is left in the directory.</para>
/// <para>check, convert and io are given <c>-f qed</c> (as is qemu-img): a mutant whose magic no longer probes as QED is
/// then still parsed as QED and refused with "Image not in QED format" (exit 1), instead of being opened as raw, where
/// check would answer 63 ("format does not support checks") and convert and io would see a plain raw file. info is
/// run without <c>-f</c>, so the probe's path is fuzzed too.</para>
/// </remarks>
internal sealed class CliFuzzHarness
{
    /// <summary>Longest any one process may run: a case that hits it is a hang.</summary>
    public static readonly TimeSpan ProcessLimit = TimeSpan.FromSeconds(30);

    /// <summary>Largest virtual size converted (a mutated size may describe terabytes of holes).</summary>
    private const long ConvertLimit = 64L << 20;

    private const string Top = "fuzz.qed";

    private readonly string _dir;
    private readonly IReadOnlyList<(string Name, byte[] Bytes)> _seeds;
    private readonly FuzzSeeds.ChainTops _tops;
    private readonly IReadOnlyList<(string Name, byte[] Bytes)> _shared;

    /// <summary>Creates a harness working in <paramref name="dir"/>, where it first writes the files the images may name as backing.</summary>
    public CliFuzzHarness(string dir, IReadOnlyList<(string Name, byte[] Bytes)> seeds, FuzzSeeds.ChainTops tops, IReadOnlyList<(string Name, byte[] Bytes)> shared)
    {
        _dir = dir;
        _seeds = seeds;
        _tops = tops;
        _shared = shared;
        Directory.CreateDirectory(dir);
        foreach (var (name, bytes) in shared)
        {
            File.WriteAllBytes(Path.Combine(dir, name), bytes);
        }
    }

    /// <summary>Runs one case; throws <see cref="CliFuzzException"/> (with the files saved) when a rule is broken.</summary>
    public CliCaseOutcome Run(int caseSeed)
    {
        var random = new Random(caseSeed);
        foreach (string stale in new[] { Top, FuzzSeeds.QedBaseName, FuzzSeeds.RawBaseName, "out.raw", "out.qed" })
        {
            File.Delete(Path.Combine(_dir, stale));
        }

        string layout, scenario;
        byte[] top;
        (string Name, byte[] Bytes)? below = null;
        int pick = random.Next(8);
        if (pick < 5)
        {
            var (name, seed) = _seeds[random.Next(_seeds.Count)];
            layout = "mutant alone";
            scenario = name;
            top = Mutator.Mutate(seed, random);
        }
        else if (pick < 7)
        {
            var (name, seed) = _seeds[random.Next(_seeds.Count)];
            bool mutateTop = random.Next(3) == 0;
            layout = "QED over mutated QED";
            scenario = mutateTop ? $"mutated overlay over mutated {name}" : $"overlay over mutated {name}";
            below = (FuzzSeeds.QedBaseName, Mutator.Mutate(seed, random));
            top = mutateTop ? Mutator.Mutate(_tops.OverQed, random) : _tops.OverQed;
        }
        else
        {
            bool mutateTop = random.Next(3) == 0;
            int length = random.Next(4) switch
            {
                0 => 0,
                1 => random.Next(1, 1024),
                2 => random.Next(1, 600) * 512,
                _ => random.Next(1, 1 << 20),
            };
            byte[] raw = new byte[length];
            raw.AsSpan().Fill((byte)random.Next(1, 256));
            layout = "QED over raw";
            scenario = $"{(mutateTop ? "mutated overlay" : "overlay")} over {length}-byte raw";
            below = (FuzzSeeds.RawBaseName, raw);
            top = mutateTop ? Mutator.Mutate(_tops.OverRaw, random) : _tops.OverRaw;
        }

        var files = new List<(string Name, byte[] Bytes)> { (Top, top) };
        if (below is { } file)
        {
            files.Add(file);
            File.WriteAllBytes(Path.Combine(_dir, file.Name), file.Bytes);
        }
        var log = new List<string>();
        try
        {
            var outcome = RunCommands(random, top, log, layout);
            var kept = _shared.Concat(below is { } b ? [b] : []).ToList();
            foreach (var (name, bytes) in kept)
            {
                Rule(File.ReadAllBytes(Path.Combine(_dir, name)).AsSpan().SequenceEqual(bytes), $"the backing file {name} was changed");
            }
            // No command may leave anything behind (a failed convert's output, a temporary file).
            var left = Directory.EnumerateFileSystemEntries(_dir).Select(Path.GetFileName).Except(kept.Select(k => k.Name).Append(Top)).ToList();
            Rule(left.Count == 0, $"left behind: {string.Join(", ", left)}");
            return outcome;
        }
        catch (Exception e)
        {
            string saved = string.Join(", ", files.Select(f => $"{f.Name} as Regressions/{FuzzRegressions.Save(f.Bytes)}"));
            string what = e is RelationException or CliRuleException or TimeoutException ? e.Message : e.ToString();
            throw new CliFuzzException($"{scenario} ({saved}): {what}\n{string.Join("\n", log)}");
        }
    }

    private CliCaseOutcome RunCommands(Random random, byte[] top, List<string> log, string layout)
    {
        File.WriteAllBytes(Path.Combine(_dir, Top), top);
        var header = HeaderFacts.Read(top);

        Qed(log, [0, 1], "info", random.Next(2) == 0 ? "--output=json" : "--output=human", "--backing-chain", Top);
        var pristine = CheckReport.From(Qed(log, [0, 1, 2, 3], "check", "-f", "qed", "--output=json", Top));
        var (asWritten, qemuPristine) = CompareWithQemu(log, pristine, afterRepair: false);

        bool converted = false;
        if (header.ImageSize <= ConvertLimit)
        {
            string output = random.Next(3) == 0 ? "out.qed" : "out.raw";
            var result = Qed(log, [0, 1], "convert", "-f", "qed", "-O", output[4..], Top, output);
            bool exists = File.Exists(Path.Combine(_dir, output));
            Rule(exists == (result.ExitCode == 0), result.ExitCode == 0 ? "convert succeeded but wrote no output" : "a failed convert left its output file behind");
            converted = result.ExitCode == 0;
            File.Delete(Path.Combine(_dir, output));
        }

        var repair = CheckReport.From(Qed(log, [0, 1, 2, 3], "check", "-f", "qed", "-r", "all", "--output=json", Top));
        var (afterRepair, qemuRepaired) = CompareWithQemu(log, repair, afterRepair: true);
        if (qemuPristine is not null && qemuRepaired is not null)
        {
            QemuCheckRelation.CheckRepairAccounting(qemuPristine, repair, qemuRepaired);
        }

        // The writes start again from the mutant as it was: io meets the damage itself (and repairs a need-check image on open).
        File.WriteAllBytes(Path.Combine(_dir, Top), top);
        long size = (long)Math.Min(header.ImageSize, long.MaxValue);
        Qed(log, [0, 1], "io", "-f", "qed",
            "-c", Io(random, "read", size, 65536),
            "-c", Io(random, $"write -P 0x{random.Next(1, 256):x2}", size, 20000),
            "-c", Io(random, "write -z", size, 70000),
            "-c", "flush",
            Top);
        var written = CheckReport.From(Qed(log, [0, 1, 2, 3], "check", "-f", "qed", "--output=json", Top));
        var (afterWrites, _) = CompareWithQemu(log, written, afterRepair: false);
        return new CliCaseOutcome(layout, converted, asWritten, afterRepair, afterWrites, repair);
    }

    /// <summary>
    /// Runs qemu-img check (with <c>-r all</c> after our repair) on the file as our check left it and applies
    /// <see cref="QemuCheckRelation"/>; returns qemu-img's report when both tools checked the image.
    /// </summary>
    private (RelationKind Kind, CheckReport? Qemu) CompareWithQemu(List<string> log, CheckReport ours, bool afterRepair)
    {
        var chain = ChainFacts.Read(Path.Combine(_dir, Top));
        if (chain.RepeatsAFile)
        {
            return (QemuCheckRelation.CheckLoop(ours), null);
        }
        var qemu = CheckReport.From(afterRepair
            ? Qemu(log, "check", "-f", "qed", "-r", "all", "--output=json", Top)
            : Qemu(log, "check", "-f", "qed", "--output=json", Top));
        var kind = QemuCheckRelation.Check(chain, ours, qemu, afterRepair);
        return (kind, kind == RelationKind.Compared ? qemu : null);
    }

    /// <summary>An io command on a random range inside the disk (offset 0 and length 512 when the size is unusable).</summary>
    private static string Io(Random random, string verb, long size, int maxLength)
    {
        long offset = size > 0 ? random.NextInt64(size) : 0;
        long length = size > 0 ? Math.Max(1, Math.Min(size - offset, random.Next(1, maxLength))) : 512;
        return string.Create(CultureInfo.InvariantCulture, $"{verb} {offset} {length}");
    }

    private ToolResult Qed(List<string> log, int[] statuses, params string[] args)
    {
        string command = "qed " + string.Join(' ', args);
        ToolResult result;
        try
        {
            result = QedProcess.Run(_dir, ProcessLimit, args);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{command} hangs: killed after {ProcessLimit.TotalSeconds:F0} s");
        }
        log.Add($"$ {command}\n{result}");
        string[] errorLines = result.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Rule(!result.StdOut.Contains("Unhandled exception", StringComparison.OrdinalIgnoreCase)
            && !result.StdErr.Contains("Unhandled exception", StringComparison.OrdinalIgnoreCase), $"{command}: unhandled exception");
        Rule(statuses.Contains(result.ExitCode), $"{command}: exit status {result.ExitCode}, expected one of {string.Join(", ", statuses)}");
        Rule(errorLines.Length <= 1, $"{command}: {errorLines.Length} lines on stderr");
        return result;
    }

    private ToolResult Qemu(List<string> log, params string[] args)
    {
        var result = Tools.Run("qemu-img", args, _dir, ProcessLimit);
        log.Add($"$ qemu-img {string.Join(' ', args)}\n{result}");
        return result;
    }

    private static void Rule(bool condition, string rule)
    {
        if (!condition)
        {
            throw new CliRuleException(rule);
        }
    }

    private sealed class CliRuleException(string message) : Exception(message);
}

/// <summary>A CLI fuzz case broke a rule; the message has the scenario, where the files were saved and every command's output.</summary>
internal sealed class CliFuzzException(string message) : Exception(message);
