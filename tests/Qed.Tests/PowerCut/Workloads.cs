namespace Qed.Tests.PowerCut;

/// <summary>The power-cut workloads of a single session (the sessions that continue a crashed one are built by <see cref="ContinuedSessions"/>).</summary>
internal static class Workloads
{
    private const long KiB = 1024;
    private const long MiB = 1024 * KiB;
    private const long GiB = 1024 * MiB;

    /// <summary>Allocating writes into an empty image without a backing file; 4 MiB per L2 table, so tables are allocated too.</summary>
    public static WorkloadSpec EmptyImage4K { get; } = new()
    {
        Name = "empty-4k",
        ClusterSize = 4096,
        TableSize = 2,
        Size = 16 * MiB,
        Target = 400,
        Script = r => GuestScript.Draw(r, 16, 16 * MiB, r => r.NextInt64(16 * MiB - 12 * KiB), r => 512 * r.Next(1, 25), zeroes: 0.1, flushes: 0.2),
    };

    /// <summary>
    /// The default geometry, starting from an image that already holds data (written and closed cleanly): in-place
    /// overwrites, partial writes beside existing clusters and allocations into the existing table, so the session's first
    /// allocation sets the need-check bit without a new table's flush behind it.
    /// </summary>
    public static WorkloadSpec Existing64K { get; } = new()
    {
        Name = "existing-64k",
        ClusterSize = 64 * (int)KiB,
        TableSize = 4,
        Size = 64 * MiB,
        UseAsync = true,
        Target = 300,
        Populate = r => Enumerable.Range(0, 8).Select(k => new GuestOp(GuestOpKind.Write, k * 8 * MiB, 256 * KiB, 500 + k)).ToList(),
        Script = r => GuestScript.Draw(r, 16, 64 * MiB, r => r.Next(5) < 3 ? r.Next(8) * 8 * MiB + r.NextInt64(512 * KiB) : r.NextInt64(63 * MiB), r => 512 * r.Next(1, 257), zeroes: 0.15, flushes: 0.2),
    };

    /// <summary>Writes spread over four L2 tables of 1 GiB each, so most sessions allocate several tables; in-place overwrites too.</summary>
    public static WorkloadSpec NewTables64K { get; } = new()
    {
        Name = "new-tables-64k",
        ClusterSize = 64 * (int)KiB,
        TableSize = 2,
        Size = 4 * GiB,
        UseAsync = true,
        Target = 300,
        Script = r => GuestScript.Draw(r, 18, 4 * GiB, r => r.Next(4) * GiB + r.NextInt64(3 * MiB), r => 512 * r.Next(1, 321), zeroes: 0.1, flushes: 0.2),
    };

    /// <summary>Partial-cluster writes over a raw backing file (copy-on-write), some past its end and one table further on.</summary>
    public static WorkloadSpec CowRaw64K { get; } = new()
    {
        Name = "cow-raw-64k",
        ClusterSize = 64 * (int)KiB,
        TableSize = 2,
        Size = 1 * GiB + 8 * MiB,
        Backing = BackingKind.Raw,
        BackingLength = 5 * MiB + 123,
        Target = 300,
        Script = r => GuestScript.Draw(r, 16, 1 * GiB + 8 * MiB, r => r.Next(7) == 0 ? GiB + r.NextInt64(7 * MiB) : r.NextInt64(7 * MiB), r => 512 * r.Next(1, 201), zeroes: 0.1, flushes: 0.2),
    };

    /// <summary>Partial-cluster writes over a QED backing file with data in some ranges and holes elsewhere.</summary>
    public static WorkloadSpec CowQed4K { get; } = new()
    {
        Name = "cow-qed-4k",
        ClusterSize = 4096,
        TableSize = 2,
        Size = 16 * MiB,
        Backing = BackingKind.Qed,
        UseAsync = true,
        Target = 350,
        Script = r => GuestScript.Draw(r, 16, 16 * MiB, r => r.NextInt64(16 * MiB - 10 * KiB), r => 512 * r.Next(1, 21), zeroes: 0.1, flushes: 0.2),
    };

    /// <summary>Write-zeroes, cluster aligned (zero clusters) and not (real zeros), over a raw backing file, and writes over zero clusters.</summary>
    public static WorkloadSpec Zeroes4KRaw { get; } = new()
    {
        Name = "zeroes-4k-raw",
        ClusterSize = 4096,
        TableSize = 2,
        Size = 16 * MiB,
        Backing = BackingKind.Raw,
        BackingLength = 12 * MiB + 300,
        Target = 350,
        Script = r =>
        {
            var script = new GuestScript();
            for (int i = 0; i < 18; i++)
            {
                double draw = r.NextDouble();
                long offset = r.NextInt64(16 * MiB - 64 * KiB) / 512 * 512;
                if (draw < 0.15)
                {
                    script.Flush();
                }
                else if (draw < 0.6 && r.Next(2) == 0)
                {
                    script.Zeroes(offset / 4096 * 4096, 4096 * r.Next(1, 12));
                }
                else if (draw < 0.6)
                {
                    script.Zeroes(offset, 512 * r.Next(1, 97));
                }
                else
                {
                    script.Write(offset, 512 * r.Next(1, 17));
                }
            }
            return script.Ops;
        },
    };

    /// <summary>1 MiB clusters without a backing file: partial writes and writes of several clusters (written in pieces).</summary>
    public static WorkloadSpec Big1M { get; } = new()
    {
        Name = "big-1m",
        ClusterSize = (int)MiB,
        TableSize = 2,
        Size = 8 * MiB,
        UseAsync = true,
        Target = 150,
        Script = r => GuestScript.Draw(r, 10, 8 * MiB, r => r.NextInt64(6 * MiB), r => 512 * r.Next(1, 4097), zeroes: 0.15, flushes: 0.2),
    };

    /// <summary>1 MiB clusters over a raw backing file: copy-up of large clusters, partial and multi-cluster writes.</summary>
    public static WorkloadSpec CowRaw1M { get; } = new()
    {
        Name = "cow-raw-1m",
        ClusterSize = (int)MiB,
        TableSize = 2,
        Size = 8 * MiB,
        Backing = BackingKind.Raw,
        BackingLength = 5 * MiB + 77,
        Target = 150,
        Script = r => GuestScript.Draw(r, 8, 8 * MiB, r => r.NextInt64(6 * MiB), r => 512 * r.Next(1, 4097), zeroes: 0.1, flushes: 0.2),
    };

    public static IReadOnlyList<WorkloadSpec> All { get; } = [EmptyImage4K, Existing64K, NewTables64K, CowRaw64K, CowQed4K, Zeroes4KRaw, Big1M, CowRaw1M];

    public static WorkloadSpec Get(string name) => All.Single(w => w.Name == name);
}
