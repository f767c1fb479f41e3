using System.Globalization;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Interop;

/// <summary>
/// Who builds an image: QEMU (qemu-img create + qemu-io) or our engine (<see cref="QedImage.Create"/> + writes).
/// A fixture recipe is written once against this class and replayed by both, so the two results can be
/// compared. Names are relative to <c>dir</c>; backing names are stored as given and resolved against the
/// image's directory by both sides.
/// </summary>
internal abstract class ImageWriter
{
    public static ImageWriter Qemu { get; } = new QemuWriter();

    /// <summary>Our engine; <paramref name="useAsync"/> null alternates the sync and async APIs op by op; <paramref name="options"/> for the writable opens.</summary>
    public static ImageWriter Qed(bool? useAsync = null, ImageOpenOptions? options = null) => new QedWriter(useAsync, options ?? new ImageOpenOptions());

    public abstract string Name { get; }

    public abstract bool IsQemu { get; }

    /// <summary>Creates a QED image; a null size is taken from the backing file.</summary>
    public abstract void Create(string dir, string name, long? size, int clusterSize = 65536, int tableSize = 4, string? backing = null, string? backingFormat = null);

    /// <summary>One open-write-close session on a QED image.</summary>
    public abstract void Session(string dir, string name, IEnumerable<GuestOp> ops);

    public void Session(string dir, string name, params GuestOp[] ops) => Session(dir, name, (IEnumerable<GuestOp>)ops);

    /// <summary>Creates an empty raw file.</summary>
    public abstract void CreateRaw(string dir, string name, long size);

    /// <summary>One session of writes on a raw file.</summary>
    public abstract void RawSession(string dir, string name, params GuestOp[] ops);

    public override string ToString() => Name;

    private sealed class QemuWriter : ImageWriter
    {
        public override string Name => "qemu";

        public override bool IsQemu => true;

        public override void Create(string dir, string name, long? size, int clusterSize, int tableSize, string? backing, string? backingFormat)
        {
            var arguments = new List<string> { "create", "-f", "qed", "-o", string.Create(CultureInfo.InvariantCulture, $"cluster_size={clusterSize},table_size={tableSize}") };
            if (backing is not null)
            {
                arguments.AddRange(["-b", backing, "-F", backingFormat ?? throw new ArgumentNullException(nameof(backingFormat))]);
            }
            arguments.Add(name);
            if (size is long s)
            {
                arguments.Add(s.ToString(CultureInfo.InvariantCulture));
            }
            Tools.QemuImg(dir, [.. arguments]);
        }

        public override void Session(string dir, string name, IEnumerable<GuestOp> ops) =>
            Tools.QemuIo(dir, "qed", name, [.. ops.Select(o => o.ToQemuIo())]);

        public override void CreateRaw(string dir, string name, long size) =>
            Tools.QemuImg(dir, "create", "-f", "raw", name, size.ToString(CultureInfo.InvariantCulture));

        public override void RawSession(string dir, string name, params GuestOp[] ops) =>
            Tools.QemuIo(dir, "raw", name, [.. ops.Select(o => o.ToQemuIo())]);
    }

    private sealed class QedWriter(bool? useAsync, ImageOpenOptions options) : ImageWriter
    {
        public override string Name => useAsync switch { null => "qed", true => "qed-async", false => "qed-sync" };

        public override bool IsQemu => false;

        public override void Create(string dir, string name, long? size, int clusterSize, int tableSize, string? backing, string? backingFormat)
        {
            string path = Path.Combine(dir, name);
            if (size is null)
            {
                using var below = DiskImage.Open(Path.Combine(dir, backing!), backingFormat, new ImageOpenOptions { ReadOnly = true });
                size = below.Size;
            }
            var create = new QedCreateOptions { Size = size.Value, ClusterSize = clusterSize, TableSize = tableSize, BackingFile = backing, BackingFormat = backingFormat };
            if (useAsync == true)
            {
                QedImage.CreateAsync(path, create).AsTask().GetAwaiter().GetResult();
            }
            else
            {
                QedImage.Create(path, create);
            }
        }

        public override void Session(string dir, string name, IEnumerable<GuestOp> ops)
        {
            string path = Path.Combine(dir, name);
            if (useAsync == true)
            {
                RunAsync(QedImage.OpenAsync(path, options).AsTask().GetAwaiter().GetResult(), ops, alwaysAsync: true).GetAwaiter().GetResult();
            }
            else
            {
                RunAsync(QedImage.Open(path, options), ops, alwaysAsync: false).GetAwaiter().GetResult();
            }
        }

        public override void CreateRaw(string dir, string name, long size)
        {
            using var raw = RawImage.Create(Path.Combine(dir, name), size);
        }

        public override void RawSession(string dir, string name, params GuestOp[] ops) =>
            RunAsync(RawImage.Open(Path.Combine(dir, name)), ops, alwaysAsync: false).GetAwaiter().GetResult();

        private async Task RunAsync(BlockDevice device, IEnumerable<GuestOp> ops, bool alwaysAsync)
        {
            int i = 0;
            try
            {
                foreach (var op in ops)
                {
                    bool async = alwaysAsync || (useAsync is null && i % 2 == 1);
                    await op.ApplyAsync(device, async);
                    i++;
                }
            }
            finally
            {
                if (alwaysAsync)
                {
                    await device.DisposeAsync();
                }
                else
                {
                    device.Dispose();
                }
            }
        }
    }
}
