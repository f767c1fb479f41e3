using System.Security.Cryptography;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.PowerCut;

/// <summary>A workload set up in a directory and run once, recorded: its backing file, image, session, guest model and crash states.</summary>
internal sealed class WorkloadRun
{
    /// <summary>The id whose pattern fills backing files.</summary>
    public const int BackingId = 0xbac0;

    public required WorkloadSpec Spec { get; init; }

    public required string Dir { get; init; }

    public required RecordedSession Session { get; init; }

    public required GuestModel Model { get; init; }

    public required CrashStateGenerator Generator { get; init; }

    /// <summary>Creates the backing file and the empty image in <paramref name="dir"/> and records one session of the workload's requests.</summary>
    public static async Task<WorkloadRun> StartAsync(WorkloadSpec spec, string dir, Random random)
    {
        var baseline = CreateBacking(spec, dir, random);
        string path = Path.Combine(dir, spec.Name + ".qed");
        QedImage.Create(path, new QedCreateOptions
        {
            Size = spec.Size,
            ClusterSize = spec.ClusterSize,
            TableSize = spec.TableSize,
            BackingFile = spec.Backing == BackingKind.None ? null : spec.BackingFileName,
            BackingFormat = spec.Backing == BackingKind.Raw ? "raw" : null,
        });
        var populated = spec.Populate?.Invoke(random) ?? [];
        if (populated.Count > 0)
        {
            baseline = Populate(path, dir, spec, baseline, populated);
        }
        var session = await RecordedSession.RunAsync(path, File.ReadAllBytes(path), spec.Script(random), spec.UseAsync);
        var populatedRegions = populated.Select(o => (o.Offset / spec.ClusterSize * spec.ClusterSize, (o.End + spec.ClusterSize - 1) / spec.ClusterSize * spec.ClusterSize));
        return new WorkloadRun
        {
            Spec = spec,
            Dir = dir,
            Session = session,
            Model = new GuestModel(spec.Size, spec.ClusterSize, baseline, session.Ops, populatedRegions),
            Generator = new CrashStateGenerator(session.Initial, session.Log),
        };
    }

    /// <summary>Writes <paramref name="ops"/> into the image in a session of its own that closes cleanly; returns what the disk then reads, confirmed with QEMU's reading.</summary>
    private static GuestBaseline Populate(string path, string dir, WorkloadSpec spec, GuestBaseline beneath, IReadOnlyList<GuestOp> ops)
    {
        byte[] view = new byte[spec.Size];
        beneath.Fill(0, view);
        using (var image = QedImage.Open(path))
        {
            foreach (var op in ops)
            {
                byte[] data = GuestPattern.Bytes(op.Id, op.Offset, (int)op.Length);
                image.Write(data, op.Offset);
                data.CopyTo(view, op.Offset);
            }
        }
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(view)), Tools.QemuFlattenDigest(dir, Path.GetFileName(path)));
        return new GuestBaseline(view);
    }

    /// <summary>Writes the backing file and returns what the guest reads through it; a QED backing file is confirmed with QEMU's reading.</summary>
    private static GuestBaseline CreateBacking(WorkloadSpec spec, string dir, Random random)
    {
        string path = Path.Combine(dir, spec.BackingFileName);
        switch (spec.Backing)
        {
            case BackingKind.Raw:
            {
                byte[] bytes = GuestPattern.Bytes(BackingId, 0, (int)spec.BackingLength);
                File.WriteAllBytes(path, bytes);
                return new GuestBaseline(bytes);
            }
            case BackingKind.Qed:
            {
                byte[] view = new byte[spec.Size];
                QedImage.Create(path, new QedCreateOptions { Size = spec.Size });
                using (var image = QedImage.Open(path))
                {
                    for (int i = 0; i < 4; i++)
                    {
                        long offset = random.NextInt64(spec.Size - 2 * 1024 * 1024) / 512 * 512;
                        int length = 512 * random.Next(1, 4097);
                        byte[] data = GuestPattern.Bytes(BackingId, offset, length);
                        image.Write(data, offset);
                        data.CopyTo(view, offset);
                    }
                }
                Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(view)), Tools.QemuFlattenDigest(dir, spec.BackingFileName));
                return new GuestBaseline(view);
            }
            default:
                return GuestBaseline.Zeros;
        }
    }
}
