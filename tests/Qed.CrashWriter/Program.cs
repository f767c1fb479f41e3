using Qed.CrashWriter;
using Qed.Image;

// Writer half of the crash test: runs a deterministic plan of writes and flushes on an image and reports
// progress on stdout ("S i" before step i starts, "F i" once the flush at step i returned) so that the test,
// which kills this process with SIGKILL at a random moment, knows what must have survived.
// Usage: Qed.CrashWriter IMAGE SEED STEPS
if (args.Length != 3)
{
    Console.Error.WriteLine("usage: Qed.CrashWriter IMAGE SEED STEPS");
    return 2;
}
string path = args[0];
int seed = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
int steps = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture);
var stdout = new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true };
using var image = QedImage.Open(path);
byte[] buffer = new byte[4 << 20];
int index = 0;
foreach (var op in CrashPlan.Generate(seed, image.Size, image.Geometry.ClusterSize, steps))
{
    stdout.WriteLine($"S {index}");
    switch (op.Kind)
    {
        case CrashOpKind.Flush:
            image.Flush();
            stdout.WriteLine($"F {index}");
            break;
        case CrashOpKind.WriteZeroes:
            image.WriteZeroes(op.Offset, op.Length);
            break;
        default:
            op.FillBuffer(buffer.AsSpan(0, op.Length));
            image.Write(buffer.AsMemory(0, op.Length), op.Offset);
            break;
    }
    index++;
}
stdout.WriteLine("DONE");
return 0;
